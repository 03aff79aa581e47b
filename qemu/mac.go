package qemu

import (
	"crypto/sha256"
	"fmt"
	"net"
	"strconv"
)

// MAC is the address a NIC gets when none is given: QEMU's 52:54:00 prefix
// and three bytes of SHA-256 over the machine name and the NIC index, so a
// test knows its VMs' MACs before they boot and two VMs with different
// names do not collide (QEMU's own default, 52:54:00:12:34:56, is the same
// for every VM). VM.MACs reports what a VM really got: should two NICs of
// one VM hash alike, the later one is rehashed.
func MAC(name string, index int) net.HardwareAddr {
	return macSalted(name, index, 0)
}

func macSalted(name string, index, salt int) net.HardwareAddr {
	in := name + "\x00" + strconv.Itoa(index)
	if salt > 0 {
		in += "\x00" + strconv.Itoa(salt)
	}
	h := sha256.Sum256([]byte(in))
	return net.HardwareAddr{0x52, 0x54, 0x00, h[0], h[1], h[2]}
}

// resolveMACs gives every NIC of m its MAC: the given one, else MAC(name,
// i). Two NICs with one MAC is an error when both were given.
func resolveMACs(name string, nics []NIC) ([]net.HardwareAddr, error) {
	out := make([]net.HardwareAddr, len(nics))
	seen := map[string]int{}
	for i, n := range nics {
		if n.MAC != nil {
			k := n.MAC.String()
			if j, dup := seen[k]; dup {
				return nil, fmt.Errorf("nics[%d].mac: %s is also nics[%d].mac", i, k, j)
			}
			out[i], seen[k] = n.MAC, i
		}
	}
	for i, n := range nics {
		if n.MAC != nil {
			continue
		}
		for salt := 0; ; salt++ {
			m := macSalted(name, i, salt)
			if _, dup := seen[m.String()]; !dup {
				out[i], seen[m.String()] = m, i
				break
			}
		}
	}
	return out, nil
}
