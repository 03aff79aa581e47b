// Go 1.24+ listeners use MPTCP, on which the kernel refuses TCP MD5 keys:
// test binaries need the same setting as cmd/weft.
//go:debug multipathtcp=0

package bgpguard

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

func TestMain(m *testing.M) {
	if os.Getenv("WEFT_GUARD_REGEN") != "" {
		if err := regenPanicCorpus(); err != nil {
			fmt.Fprintln(os.Stderr, "regenerating testdata/gobgp-panics.txt:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// rawUpdate frames an UPDATE from raw path attribute bytes and IPv4 NLRI.
func rawUpdate(attrs, nlri []byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, 0) // no withdrawn routes
	body = binary.BigEndian.AppendUint16(body, uint16(len(attrs)))
	body = append(body, attrs...)
	body = append(body, nlri...)
	return frame(bgp.BGP_MSG_UPDATE, body)
}

// rawAttr encodes one path attribute (flags given, length as given by
// value unless lenOverride >= 0).
func rawAttr(fl bgp.BGPAttrFlag, typ byte, value []byte, lenOverride int) []byte {
	flags := byte(fl)
	n := len(value)
	if lenOverride >= 0 {
		n = lenOverride
	}
	if n > 255 {
		flags |= byte(bgp.BGP_ATTR_FLAG_EXTENDED_LENGTH)
		return append(binary.BigEndian.AppendUint16([]byte{flags, typ}, uint16(n)), value...)
	}
	return append([]byte{flags, typ, byte(n)}, value...)
}
