package underlay

// This file finds the NIC of a phy link among the host's links.

import (
	"bytes"
	"net"
	"strings"
)

// upperKinds are link kinds built on top of other links: never matched as
// a phy link by MAC, since they carry their lower link's MAC.
var upperKinds = map[string]bool{
	"bond": true, "vlan": true, "bridge": true, "macvlan": true, "macvtap": true,
	"ipvlan": true, "ipvtap": true, "vxlan": true, "team": true, "vrf": true,
}

// resolvePhy finds the NIC of a phy link: by MAC when given (a MAC says
// which NIC, a name only where the kernel put it), else by name.
func resolvePhy(ll *linkLayout, host []hostLink, byName map[string]hostLink, opts layoutOpts) {
	m := ll.Link.Match
	gaveUp := max(opts.GaveUpAfter, opts.GaveUp[ll.ID])
	switch {
	case len(m.MAC) > 0:
		found := nicsWithMAC(host, m.MAC)
		switch len(found) {
		case 0:
			ll.NoNIC = true
			if gaveUp > 0 {
				ll.fail("no NIC with MAC %s after %s; check cabling/driver", m.MAC, gaveUp)
			} else {
				ll.wait("no NIC with MAC %s yet", m.MAC)
			}
			return
		case 1:
		default:
			names := make([]string, len(found))
			for i, h := range found {
				names[i] = h.Name
			}
			ll.fail("MAC %s matches several NICs (%s); match by name instead", m.MAC, strings.Join(names, ", "))
			return
		}
		ll.Name, ll.Exists, ll.Host = found[0].Name, true, found[0]
		if len(found[0].MAC) == ibAddrLen && ll.Link.DHCP4 {
			ll.note("DHCP on InfiniBand is not supported (the DHCP client speaks Ethernet): give %s a static address", ll.Name)
		}
	case m.Name != "":
		h, ok := byName[m.Name]
		if !ok {
			ll.NoNIC = true
			if gaveUp > 0 {
				ll.fail("no NIC named %s after %s; check cabling/driver", m.Name, gaveUp)
			} else {
				ll.wait("no NIC named %s yet", m.Name)
			}
			return
		}
		if h.Loopback {
			ll.fail("%s is the loopback device, not a NIC", m.Name)
			return
		}
		ll.Name, ll.Exists, ll.Host = h.Name, true, h
	default:
		ll.fail("phy link needs match.mac or match.name")
	}
}

// ibAddrLen is the length of an InfiniBand (IPoIB) link-layer address.
const ibAddrLen = 20

// nicsWithMAC finds the NICs with address mac. A 6-byte MAC also finds an
// InfiniBand NIC by the Ethernet-style form OpenStack writes for one:
// bytes 13-15 and 18-20 of its 20-byte address (its port GUID without the
// EUI-64 filler), as cloud-init reads it; an Ethernet NIC with that MAC
// wins, as in cloud-init.
func nicsWithMAC(host []hostLink, mac net.HardwareAddr) []hostLink {
	var found, ib []hostLink
	for _, h := range host {
		if h.Loopback || upperKinds[h.Kind] {
			continue
		}
		switch {
		case bytes.Equal(h.MAC, mac):
			found = append(found, h)
		case len(mac) == 6 && len(h.MAC) == ibAddrLen && bytes.Equal(h.MAC[12:15], mac[:3]) && bytes.Equal(h.MAC[17:20], mac[3:]):
			ib = append(ib, h)
		}
	}
	if len(found) == 0 {
		return ib
	}
	return found
}
