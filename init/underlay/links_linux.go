package underlay

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/steps"
)

// applyPhy frees a NIC from a master it should not have and, unless it
// joins a bond (the bond sets it up), sets its MTU and brings it up.
func (m *Manager) applyPhy(ll *linkLayout) ([]string, error) {
	link, err := m.nl.LinkByName(ll.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ll.Name, err)
	}
	var notes []string
	if ll.Bond != "" {
		return ll.Notes, nil
	}
	if mi := link.Attrs().MasterIndex; mi != 0 {
		if err := m.nl.LinkSetNoMaster(link); err != nil {
			return nil, fmt.Errorf("releasing %s from its master (index %d): %w", ll.Name, mi, err)
		}
		notes = append(notes, fmt.Sprintf("released from master index %d", mi))
		if link, err = m.nl.LinkByName(ll.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", ll.Name, err)
		}
	}
	mtuNote, err := m.setMTU(link, ll.MTU, ll.MinMTU, 0)
	if err != nil {
		return nil, err
	}
	if mtuNote != "" {
		notes = append(notes, mtuNote)
	}
	if err := m.setUp(link); err != nil {
		return nil, err
	}
	return append(notes, ll.Notes...), nil
}

// setMTU sets the exact MTU when want > 0, else raises it to atLeast when
// smaller; limit > 0 caps it (a VLAN's parent). It does nothing when the
// link already has it. The note, if any, goes into the link's verdict.
func (m *Manager) setMTU(link netlink.Link, want, atLeast, limit int) (string, error) {
	a := link.Attrs()
	note := ""
	if want == 0 && atLeast > 0 {
		// Stated whether or not it changes anything now: the verdict
		// describes the state, so that a re-apply prints the same.
		note = fmt.Sprintf("mtu at least %d for the vlans on it", atLeast)
		if atLeast > a.MTU {
			want = atLeast
		}
	}
	if want == 0 {
		return note, nil
	}
	if limit > 0 && want > limit {
		note = fmt.Sprintf("mtu %d clamped to the parent's %d", want, limit)
		want = limit
	}
	if want == a.MTU {
		return note, nil
	}
	if err := m.nl.LinkSetMTU(link, want); err != nil {
		return note, fmt.Errorf("setting mtu %d on %s (now %d): %w", want, a.Name, a.MTU, err)
	}
	return note, nil
}

func (m *Manager) setUp(link netlink.Link) error {
	if link.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := m.nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("setting %s up: %w", link.Attrs().Name, err)
	}
	return nil
}

func (m *Manager) setMAC(link netlink.Link, mac net.HardwareAddr) error {
	if len(mac) == 0 || strings.EqualFold(link.Attrs().HardwareAddr.String(), mac.String()) {
		return nil
	}
	err := m.nl.LinkSetHardwareAddr(link, mac)
	if errors.Is(err, unix.EBUSY) { // some drivers refuse while up
		if err = m.nl.LinkSetDown(link); err == nil {
			err = m.nl.LinkSetHardwareAddr(link, mac)
			if uerr := m.nl.LinkSetUp(link); err == nil {
				err = uerr
			}
		}
	}
	if err != nil {
		return fmt.Errorf("setting mac %s on %s: %w", mac, link.Attrs().Name, err)
	}
	return nil
}

// notSupported explains EOPNOTSUPP from link creation: the kernel has no
// driver for the link kind (PID 1 loads bonding and 8021q before us).
func notSupported(err error, module string) error {
	if errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%w (is the %s module loaded?)", err, module)
	}
	return err
}

// applyBond creates or checks the bond, sets its MAC and MTU, enslaves the
// members (down first), and brings it up. Member verdicts are reported
// here: a member that cannot be enslaved fails alone.
func (m *Manager) applyBond(ll *linkLayout) ([]string, error) {
	l := ll.Link
	mode := netlink.StringToBondMode(normBondMode(l.BondMode))
	hash := netlink.BondXmitHashPolicy(-1)
	if l.BondHashPolicy != "" {
		hash = netlink.StringToBondXmitHashPolicy(strings.ToLower(l.BondHashPolicy))
	}
	notes := slices.Clone(ll.Notes)

	link, err := m.nl.LinkByName(ll.Name)
	if err == nil {
		b, ok := link.(*netlink.Bond)
		switch {
		case !ok:
			return nil, fmt.Errorf("%s exists and is a %s, not a bond", ll.Name, link.Type())
		case b.Mode != mode || (l.BondMiimon > 0 && b.Miimon != l.BondMiimon) || (hash >= 0 && b.XmitHashPolicy != hash):
			// Bond settings only change on an empty bond that is down:
			// recreating it is simpler and as disruptive.
			notes = append(notes, fmt.Sprintf("recreated (was mode %s miimon %d hash %s)", b.Mode, b.Miimon, b.XmitHashPolicy))
			if err := m.nl.LinkDel(link); err != nil {
				return nil, fmt.Errorf("deleting %s to change its settings: %w", ll.Name, err)
			}
			link = nil
		}
	} else {
		link = nil
	}
	if link == nil {
		nb := netlink.NewLinkBond(netlink.LinkAttrs{Name: ll.Name, HardwareAddr: l.MAC})
		nb.Mode = mode
		if l.BondMiimon > 0 {
			nb.Miimon = l.BondMiimon
		}
		if hash >= 0 {
			nb.XmitHashPolicy = hash
		}
		if err := m.nl.LinkAdd(nb); err != nil {
			err = fmt.Errorf("creating bond %s (mode %s): %w", ll.Name, mode, notSupported(err, "bonding"))
			m.reportMembers(ll, steps.Failed, err.Error())
			return nil, err
		}
		m.mu.Lock()
		m.links[ll.Name].created = true
		m.mu.Unlock()
		if link, err = m.nl.LinkByName(ll.Name); err != nil {
			return nil, fmt.Errorf("bond %s after creation: %w", ll.Name, err)
		}
	} else if err := m.setMAC(link, l.MAC); err != nil {
		return nil, err
	}
	// MTU first: members take the bond's MTU when enslaved.
	mtuNote, err := m.setMTU(link, ll.MTU, ll.MinMTU, 0)
	if err != nil {
		return nil, err
	}
	if mtuNote != "" {
		notes = append(notes, mtuNote)
	}
	bondIdx := link.Attrs().Index

	// Members that are not declared any more leave the bond.
	host, err := m.nl.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	for _, h := range host {
		if h.Attrs().MasterIndex == bondIdx && !slices.Contains(ll.Members, h.Attrs().Name) {
			if err := m.nl.LinkSetNoMaster(h); err != nil {
				notes = append(notes, fmt.Sprintf("releasing %s: %v", h.Attrs().Name, err))
			} else {
				notes = append(notes, fmt.Sprintf("released %s (not a declared member)", h.Attrs().Name))
			}
		}
	}

	enslaved := 0
	var failures []string
	for _, name := range ll.Members {
		mid := m.memberID(ll, name)
		ml, err := m.nl.LinkByName(name)
		if err == nil && ml.Attrs().MasterIndex != bondIdx {
			err = m.enslave(ml, bondIdx)
		}
		mp := &linkLayout{ID: mid, Name: name, Link: config.Link{Kind: config.LinkPhy}}
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", name, err))
			m.reportLink(mp, steps.Failed, fmt.Sprintf("enslaving %s to %s: %v", name, ll.Name, err))
			continue
		}
		enslaved++
		detail := fmt.Sprintf("%s enslaved to bond %s", name, ll.Name)
		if member := m.layoutLink(mid); member != nil {
			detail = joinDetail(detail, member.Notes)
		}
		m.reportLink(mp, steps.OK, detail, "bond", ll.Name)
	}
	if enslaved == 0 {
		return nil, fmt.Errorf("bond %s: no member could be enslaved: %s", ll.Name, strings.Join(failures, "; "))
	}
	if len(failures) > 0 {
		notes = append(notes, "degraded: "+strings.Join(failures, "; "))
	}
	if err := m.setUp(link); err != nil {
		return nil, err
	}
	return notes, nil
}

func (m *Manager) enslave(ml netlink.Link, bondIdx int) error {
	if ml.Attrs().MasterIndex != 0 {
		if err := m.nl.LinkSetNoMaster(ml); err != nil {
			return fmt.Errorf("releasing from its current master: %w", err)
		}
	}
	// The bonding driver refuses members that are up.
	if ml.Attrs().Flags&net.FlagUp != 0 {
		if err := m.nl.LinkSetDown(ml); err != nil {
			return fmt.Errorf("setting down: %w", err)
		}
	}
	if err := m.nl.LinkSetMasterByIndex(ml, bondIdx); err != nil {
		return err
	}
	return nil
}

func (m *Manager) layoutLink(id string) *linkLayout {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.layout == nil {
		return nil
	}
	return m.layout.byID(id)
}

// memberID finds the declared ID of a bond member by kernel name.
func (m *Manager) memberID(bond *linkLayout, name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ll := range m.layout.Links {
		if ll.BondID == bond.ID && ll.Name == name {
			return ll.ID
		}
	}
	return name
}

func (m *Manager) reportMembers(bond *linkLayout, v steps.Verdict, detail string) {
	m.mu.Lock()
	var members []*linkLayout
	for _, ll := range m.layout.Links {
		if ll.BondID == bond.ID && ll.State == stateReady {
			members = append(members, ll)
		}
	}
	m.mu.Unlock()
	for _, mp := range members {
		m.reportLink(mp, v, detail, "bond", bond.Name)
	}
}

// applyVLAN creates the VLAN on its parent (or recreates one that sits on
// another parent or id), sets MAC and MTU (never above the parent's) and
// brings it up.
func (m *Manager) applyVLAN(ll *linkLayout) ([]string, error) {
	l := ll.Link
	notes := slices.Clone(ll.Notes)
	parent, err := m.nl.LinkByName(ll.Parent)
	if err != nil {
		return nil, fmt.Errorf("parent %s: %w", ll.Parent, err)
	}
	link, err := m.nl.LinkByName(ll.Name)
	if err == nil {
		v, ok := link.(*netlink.Vlan)
		if !ok {
			return nil, fmt.Errorf("%s exists and is a %s, not a vlan", ll.Name, link.Type())
		}
		if ll.Recreate || v.ParentIndex != parent.Attrs().Index || v.VlanId != l.VLANID {
			if err := m.nl.LinkDel(link); err != nil {
				return nil, fmt.Errorf("deleting %s to recreate it: %w", ll.Name, err)
			}
			link = nil
		}
	} else {
		link = nil
	}
	if link == nil {
		nv := &netlink.Vlan{
			LinkAttrs:    netlink.LinkAttrs{Name: ll.Name, ParentIndex: parent.Attrs().Index, HardwareAddr: l.MAC},
			VlanId:       l.VLANID,
			VlanProtocol: netlink.VLAN_PROTOCOL_8021Q,
		}
		if err := m.nl.LinkAdd(nv); err != nil {
			return nil, fmt.Errorf("creating vlan %s (id %d on %s): %w", ll.Name, l.VLANID, ll.Parent, notSupported(err, "8021q"))
		}
		m.mu.Lock()
		m.links[ll.Name].created = true
		m.mu.Unlock()
		if link, err = m.nl.LinkByName(ll.Name); err != nil {
			return nil, fmt.Errorf("vlan %s after creation: %w", ll.Name, err)
		}
	} else if err := m.setMAC(link, l.MAC); err != nil {
		return nil, err
	}
	mtuNote, err := m.setMTU(link, ll.MTU, ll.MinMTU, parent.Attrs().MTU)
	if err != nil {
		return nil, err
	}
	if mtuNote != "" {
		notes = append(notes, mtuNote)
	}
	if err := m.setUp(link); err != nil {
		return nil, err
	}
	return notes, nil
}
