package e2e

import (
	"strings"
	"testing"

	"github.com/weftnet/weft/qemu"
)

const nodeMAC = "52:54:00:12:34:01"

// weftYAML is a valid fleet config whose underlay asks for DHCP on the
// node's NIC with an MTU that differs from the default, so the test can see
// that the config's MTU was applied.
var weftYAML = `
node: {hostname: auto}
underlay:
  links:
    - match: {mac: "` + nodeMAC + `"}
      dhcp: true
      mtu: 1400
bgp:
  asn: 64512
  controllers: [{address: 10.0.2.2, asn: 64512}]
overlay: {encapsulation: [mplsoudp, vxlan]}
networks:
  - name: leonardo
    vni: 100
    routeTargets: {import: ["64512:100"], export: ["64512:100"]}
    subnets: ["10.0.10.0/24"]
`

const metaData = `{"uuid": "4d3c2b1a-0000-4000-8000-000000000001", "name": "node-a", "hostname": "node-a.example"}`

// stepsInOrder are the bring-up steps a node configured from a config
// drive reports, in order. Its DHCP runs beside the rest: the config is
// on the drive and needs no lease, so "dhcp" and "config" may come in
// either order (a QEMU user-net lease usually, not always, wins); the
// lease comes after its link and before the services, which bind its
// address (dhcpInOrder).
var (
	stepsInOrder = []string{"mounts", "modules", "cmdline", "config-drive", "link", "config", "hostname", "services", "ready"}
	dhcpInOrder  = []string{"link", "dhcp", "services", "ready"}
)

// TestBootConfigDrive boots from a config drive of each filesystem nova
// writes, ISO 9660 (a cdrom) and FAT (a disk labelled CONFIG-2): the node
// finds it, mounts it with the real mount(2) of its own kernel (isofs,
// vfat) and reads its meta_data.json and user_data.
func TestBootConfigDrive(t *testing.T) {
	for _, fs := range []string{qemu.FSISO9660, qemu.FSVFAT} {
		t.Run(fs, func(t *testing.T) {
			vm := boot(t, qemu.Machine{
				NICs:          []qemu.NIC{{MAC: mac(nodeMAC), User: &qemu.UserNet{}}},
				ConfigDrive:   configDrive(t, metaData, "", weftYAML),
				ConfigDriveFS: fs,
			})
			expect(t, vm, `msg="config drive read" dev=/dev/vda fstype=`+fs+` meta_data=true`)
			expect(t, vm, `weft: step=config-drive verdict=ok meta_data=true .*source="config-drive /dev/vda" user_data=weft.yaml`)
			_, tLink := expect(t, vm, `weft: step=link verdict=ok .*mtu=1400`)
			_, tDHCP := expect(t, vm, `weft: step=dhcp verdict=ok .*address=10\.0\.2\.15`)
			_, tConfig := expect(t, vm, `weft: step=config verdict=ok`)
			expect(t, vm, `weft: step=hostname verdict=ok .*node-a`)
			_, tReady := expect(t, vm, `weft: step=ready verdict=ok`)
			checkOrder(t, vm.Console(), stepsInOrder)
			checkOrder(t, vm.Console(), dhcpInOrder)
			name := "config-drive"
			if fs != qemu.FSISO9660 {
				name += "-" + fs
			}
			figures(t, name, "s-to-link", tLink, "s-to-dhcp", tDHCP, "s-to-config", tConfig, "s-to-ready", tReady)
		})
	}
}

func TestBootMetadataService(t *testing.T) {
	// The BGP controller sits on the provisioning net (QEMU's host address
	// in it): the vRouter binds the address the node reaches it from, and
	// the node is ready only with one (a link-local address that routes
	// nowhere is not an underlay).
	port := serveMetadata(t, metaData, "", strings.Replace(weftYAML, "address: 10.0.2.2", "address: 169.254.2.2", 1))
	vm := boot(t, qemu.Machine{
		NICs: []qemu.NIC{{MAC: mac(nodeMAC), User: &qemu.UserNet{
			// The node's real default: the metadata service at 169.254.169.254,
			// forwarded by QEMU to this test's server and nowhere else. QEMU
			// forwards only addresses inside the guest network, so the node is
			// given one in 169.254.0.0/16, as on a link-local provisioning net.
			Net:      "169.254.0.0/16",
			GuestFwd: []string{"tcp:169.254.169.254:80-" + relay(t, port)},
		}}},
	})
	expect(t, vm, `weft: step=config-drive verdict=skipped`)
	_, tDHCP := expect(t, vm, `weft: step=dhcp verdict=ok .*address=169\.254\.\d+\.15`)
	expect(t, vm, `weft: step=metadata verdict=ok .*169\.254\.169\.254`)
	_, tConfig := expect(t, vm, `weft: step=config verdict=ok`)
	expect(t, vm, `weft: step=link verdict=ok .*mtu=1400`)
	expect(t, vm, `weft: step=services verdict=ok .*underlay=169\.254\.\d+\.15`)
	_, tReady := expect(t, vm, `weft: step=ready verdict=ok`)
	figures(t, "metadata-service", "s-to-dhcp", tDHCP, "s-to-config", tConfig, "s-to-ready", tReady)
}

func TestBootConfigURL(t *testing.T) {
	port := serveMetadata(t, metaData, "", weftYAML)
	vm := boot(t, qemu.Machine{
		Append: "weft.config=http://10.0.2.100/",
		NICs: []qemu.NIC{{MAC: mac(nodeMAC), User: &qemu.UserNet{
			GuestFwd: []string{"tcp:10.0.2.100:80-" + relay(t, port)},
		}}},
	})
	expect(t, vm, `weft: step=url verdict=ok .*10\.0\.2\.100`)
	expect(t, vm, `weft: step=config verdict=ok`)
	expect(t, vm, `weft: step=ready verdict=ok`)
}

func TestBootPXE(t *testing.T) {
	img := imageDir(t)
	vm := boot(t, qemu.Machine{
		PXE:         true,
		NICs:        []qemu.NIC{{MAC: mac(nodeMAC), User: &qemu.UserNet{TFTP: img, BootFile: "boot.ipxe"}}},
		ConfigDrive: configDrive(t, metaData, "", weftYAML),
	})
	_, tKernel := expect(t, vm, `weft: step=mounts verdict=`)
	_, tDHCP := expect(t, vm, `weft: step=dhcp verdict=ok`)
	_, tReady := expect(t, vm, `weft: step=ready verdict=ok`)
	figures(t, "pxe", "s-to-init", tKernel, "s-to-dhcp", tDHCP, "s-to-ready", tReady)
}

// A bond of two NICs with a VLAN on it, all static from network_data.json:
// the node reports the addresses and routes it reads back from the kernel.
func TestBootStaticBondVLAN(t *testing.T) {
	const nd = `{
  "links": [
    {"id": "nic0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:01", "mtu": 9000},
    {"id": "nic1", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:02", "mtu": null},
    {"id": "bond0", "type": "bond", "bond_links": ["nic0", "nic1"], "bond_mode": "active-backup",
     "bond_miimon": "100", "ethernet_mac_address": "52:54:00:12:34:01", "mtu": 9000},
    {"id": "vlan100", "type": "vlan", "vlan_link": "bond0", "vlan_id": 100, "vlan_mac_address": null, "mtu": 1500}
  ],
  "networks": [
    {"id": "net0", "type": "ipv4", "link": "vlan100", "ip_address": "192.0.2.10", "netmask": "255.255.255.0",
     "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"},
                {"network": "198.51.100.0", "netmask": "255.255.255.0", "gateway": "192.0.2.254"}]},
    {"id": "net1", "type": "ipv6", "link": "bond0", "ip_address": "2001:db8::10/64"}
  ],
  "services": [{"type": "dns", "address": "192.0.2.53"}]
}`
	vm := boot(t, qemu.Machine{
		NICs: []qemu.NIC{
			{MAC: mac("52:54:00:12:34:01"), User: &qemu.UserNet{}},
			{MAC: mac("52:54:00:12:34:02"), User: &qemu.UserNet{}},
		},
		ConfigDrive: configDrive(t, metaData, nd, weftYAMLNoUnderlay),
	})
	expect(t, vm, `weft: step=link verdict=ok .*link=bond0.*`)
	expect(t, vm, `weft: step=link verdict=ok .*192\.0\.2\.10/24.*link=vlan100`)
	expect(t, vm, `weft: step=link verdict=ok .*2001:db8::10/64.*link=bond0|weft: step=link verdict=ok .*link=bond0.*2001:db8::10/64`)
	expect(t, vm, `weft: step=ready verdict=ok`)
	if strings.Contains(vm.Console(), "step=dhcp verdict=ok") {
		t.Error("a static network_data.json must not run DHCP")
	}
}

var weftYAMLNoUnderlay = strings.Replace(weftYAML, `underlay:
  links:
    - match: {mac: "`+nodeMAC+`"}
      dhcp: true
      mtu: 1400
`, "", 1)

// Bad input never takes the node down: each fault is named precisely and
// the node keeps retrying.
func TestBootBadInputs(t *testing.T) {
	t.Run("invalid weft.yaml and network_data.json", func(t *testing.T) {
		const nd = `{
  "links": [
    {"id": "nic0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:01", "mtu": 40},
    {"id": "ib0", "type": "infiniband", "ethernet_mac_address": "52:54:00:12:34:09"},
    {"id": "ghost", "type": "phy", "ethernet_mac_address": "52:54:00:99:99:99"}
  ],
  "networks": [{"id": "net0", "type": "ipv4_dhcp", "link": "nic0"}]
}`
		bad := strings.Replace(weftYAMLNoUnderlay, "asn: 64512\n", "asn: 4294967296\n", 1)
		vm := boot(t, qemu.Machine{
			NICs:        []qemu.NIC{{MAC: mac(nodeMAC), User: &qemu.UserNet{}}},
			ConfigDrive: configDrive(t, metaData, nd, bad),
		})
		expect(t, vm, `step=network-data verdict=failed .*path=links\[0\]\.mtu`)
		// An unknown type is a NIC with a warning, as in cloud-init.
		expect(t, vm, `step=network-data verdict=warning .*infiniband.*path=links\[1\]\.type`)
		expect(t, vm, `weft: step=link verdict=(failed|waiting) .*52:54:00:99:99:99`)
		expect(t, vm, `weft: step=dhcp verdict=ok`)
		expect(t, vm, `weft: step=config verdict=failed .*bgp\.asn`)
		// Still up and reading the drive again; the verdict itself is printed
		// once while it stays the same (a retry loop prints only changes).
		expectAgain(t, vm, `msg="config drive read"`)
		if strings.Contains(vm.Console(), "Kernel panic") {
			t.Fatal("kernel panic")
		}
	})
	t.Run("unreachable metadata service", func(t *testing.T) {
		vm := boot(t, qemu.Machine{
			// restricted user networking: nothing answers at 169.254.169.254
			NICs: []qemu.NIC{{MAC: mac(nodeMAC), User: &qemu.UserNet{}}},
		})
		expect(t, vm, `weft: step=dhcp verdict=ok`)
		expect(t, vm, `weft: step=metadata verdict=(waiting|failed) .*169\.254\.169\.254`)
		expect(t, vm, `weft: step=config verdict=waiting`)
		// Still up and trying again: the verdict is printed again only when
		// its text changes (the last error of a round of attempts may be
		// the same), the attempts are logged each time.
		expectAgain(t, vm, `msg="config source attempt failed; retrying" source=metadata attempt=1 `)
		if strings.Contains(vm.Console(), "step=ready verdict=ok") {
			t.Fatal("a node without configuration must not report ready")
		}
	})
}

// checkOrder asserts that the first report of each step appears in order.
func checkOrder(t *testing.T, console string, names []string) {
	t.Helper()
	last := -1
	for _, n := range names {
		i := strings.Index(console, "weft: step="+n+" ")
		if i < 0 {
			t.Errorf("console never reported step %q", n)
			continue
		}
		if i < last {
			t.Errorf("step %q reported out of order", n)
		}
		last = i
	}
}
