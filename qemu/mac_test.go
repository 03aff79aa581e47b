package qemu

import (
	"net"
	"strings"
	"testing"
)

func TestMAC(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"weft", "node-a", "node-b", "n1", "n2"} {
		for i := range 4 {
			m := MAC(name, i)
			if !strings.HasPrefix(m.String(), "52:54:00:") || len(m) != 6 {
				t.Fatalf("MAC(%q, %d) = %s, want 52:54:00:xx:xx:xx", name, i, m)
			}
			if m.String() != MAC(name, i).String() {
				t.Fatalf("MAC(%q, %d) is not deterministic", name, i)
			}
			key := name + "/" + string(rune('0'+i))
			if prev, dup := seen[m.String()]; dup {
				t.Fatalf("MAC(%s) = MAC(%s) = %s", key, prev, m)
			}
			seen[m.String()] = key
		}
	}
	// A fixed value, so that a change of the scheme is a visible decision:
	// tests elsewhere may have written these into network_data.json.
	for _, tt := range []struct {
		name  string
		index int
		want  string
	}{{"weft", 0, "52:54:00:27:e2:3f"}, {"node-a", 1, "52:54:00:50:ed:12"}} {
		if got := MAC(tt.name, tt.index).String(); got != tt.want {
			t.Errorf("MAC(%q, %d) = %s, want %s", tt.name, tt.index, got, tt.want)
		}
	}
}

func TestResolveMACs(t *testing.T) {
	given := net.HardwareAddr{0x52, 0x54, 0, 0xaa, 0xbb, 0xcc}
	macs, err := resolveMACs("n", []NIC{{}, {MAC: given}, {}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{MAC("n", 0).String(), given.String(), MAC("n", 2).String()}
	for i := range want {
		if macs[i].String() != want[i] {
			t.Errorf("macs[%d] = %s, want %s", i, macs[i], want[i])
		}
	}

	// A given MAC equal to a generated one pushes the generated one aside.
	macs, err = resolveMACs("n", []NIC{{}, {MAC: MAC("n", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	if macs[0].String() == macs[1].String() {
		t.Fatalf("duplicate MACs: %s", macs)
	}

	_, err = resolveMACs("n", []NIC{{MAC: given}, {MAC: given}})
	if err == nil || !strings.Contains(err.Error(), "nics[1].mac: 52:54:00:aa:bb:cc is also nics[0].mac") {
		t.Fatalf("duplicate given MACs: err = %v", err)
	}
}
