package packet

import (
	"testing"
)

// The inner loops of the forwarding path, per packet.

func BenchmarkParseFiveTupleHash(b *testing.B) {
	tcp := tcpSegment(b, v4A, v4B, TCPFlagACK, nil, "0123456789").Bytes()
	pkt := ipv4Packet(b, IPv4Header{Protocol: ProtoTCP, Src: v4A, Dst: v4B}, tcp)
	b.ReportAllocs()
	var sink uint64
	for i := 0; i < b.N; i++ {
		ft, err := ParseFiveTuple(pkt)
		if err != nil {
			b.Fatal(err)
		}
		sink += uint64(FlowSrcPort(ft.Hash()))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
	_ = sink
}

func BenchmarkForwardIPv4(b *testing.B) {
	// Ethernet parse, IPv4 parse, TTL decrement, MAC rewrite: a local hop.
	tcp := tcpSegment(b, v4A, v4B, TCPFlagACK, nil, "0123456789").Bytes()
	frame := make([]byte, 14)
	putEthernet(frame, macB, macA, EtherTypeIPv4)
	frame = append(frame, ipv4Packet(b, IPv4Header{Protocol: ProtoTCP, TTL: 255, Src: v4A, Dst: v4B}, tcp)...)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e, err := ParseEthernet(frame)
		if err != nil {
			b.Fatal(err)
		}
		ip, err := ParseIPv4(e.Payload())
		if err != nil {
			b.Fatal(err)
		}
		if !ip.DecTTL() {
			frame[14+8] = 255
			ip.SetChecksum()
		}
		e.SetDst(macA)
		e.SetSrc(macB)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(1500)
	var sink uint16
	for i := 0; i < b.N; i++ {
		sink += checksum(buf, 0)
	}
	_ = sink
}
