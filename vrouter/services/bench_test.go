package services

import (
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/weftnet/weft/vrouter/packet"
)

// BenchmarkHandle measures what Handle costs per frame: the answered kinds,
// and the common case of a frame passed on to the forwarder untouched.
func BenchmarkHandle(b *testing.B) {
	p := testPort()
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"arp", arpFrame(b, arpReq{ethSrc: epMAC, sha: epMAC, spa: ep4.Addr(), tpa: gw4})},
		{"neighbor-solicitation", ndFrame(b, ndReq{ethSrc: epMAC, src: epLL, dst: packet.SolicitedNodeMulticast(gwLL), body: nsBody(gwLL, &epMAC)})},
		{"router-solicitation", ndFrame(b, ndReq{ethSrc: epMAC, src: epLL, dst: netip.MustParseAddr("ff02::2"), body: rsBody(&epMAC)})},
		{"dhcp-discover", dhcpFrame(b, udpReq{}, dhcpMsg(dhcpv4.MessageTypeDiscover))},
		{"forwarded-udp4", udpFrame(b, udpReq{ethSrc: epMAC, src: ep4.Addr(), dst: netip.MustParseAddr("192.0.2.1"), srcPort: 4000, dstPort: 53}, make([]byte, 64))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			out := make([]byte, MaxReplyLen)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Handle(bc.frame, p, out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
		})
	}
}
