package port

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/vrouter/frame"
)

// hdr builds a virtio-net header.
func hdr(flags, gsoType uint8, hdrLen, gsoSize, csumStart, csumOff uint16) []byte {
	h := make([]byte, vnetHdrLen)
	h[0], h[1] = flags, gsoType
	binary.LittleEndian.PutUint16(h[2:], hdrLen)
	binary.LittleEndian.PutUint16(h[4:], gsoSize)
	binary.LittleEndian.PutUint16(h[6:], csumStart)
	binary.LittleEndian.PutUint16(h[8:], csumOff)
	return h
}

// l4Frame is an Ethernet frame with an IP header of ipLen bytes and a TCP
// header of tcpLen bytes (or UDP when tcpLen is 0) and payload bytes;
// cwr sets the TCP CWR flag.
func l4Frame(ipLen, tcpLen, payload int, cwr bool) []byte {
	l4 := udpLen
	if tcpLen > 0 {
		l4 = tcpLen
	}
	b := make([]byte, 14+ipLen+l4+payload)
	if tcpLen > 0 {
		b[14+ipLen+12] = byte(tcpLen/4) << 4
		if cwr {
			b[14+ipLen+13] = tcpFlagCWR
		}
	}
	return b
}

func TestDecodeVnet(t *testing.T) {
	tcp4 := l4Frame(20, 32, 3000, false)
	tcp4cwr := l4Frame(20, 20, 3000, true)
	tcp6 := l4Frame(40, 20, 3000, false)
	udp4 := l4Frame(20, 0, 3000, false)
	tests := []struct {
		name string
		h    []byte
		data []byte
		want frame.Offload
		err  error
	}{
		{"plain", hdr(0, 0, 0, 0, 0, 0), tcp4, frame.Offload{}, nil},
		{"plain with hint ignored", hdr(0, 0, 1514, 0, 0, 0), tcp4, frame.Offload{}, nil},
		{"data valid", hdr(vnetFlagDataValid, 0, 0, 0, 0, 0), tcp4, frame.Offload{CsumValid: true}, nil},
		{"partial checksum", hdr(vnetFlagNeedsCsum, 0, 0, 0, 34, 16), tcp4,
			frame.Offload{NeedsCsum: true, CsumStart: 34, CsumOffset: 16}, nil},
		{"both flags", hdr(vnetFlagNeedsCsum|vnetFlagDataValid, 0, 0, 0, 34, 16), tcp4,
			frame.Offload{NeedsCsum: true, CsumStart: 34, CsumOffset: 16, CsumValid: true}, nil},
		{"csum fields ignored without the flag", hdr(0, 0, 0, 0, 9999, 9999), tcp4, frame.Offload{}, nil},
		{"rsc flag ignored", hdr(4, 0, 0, 0, 0, 0), tcp4, frame.Offload{}, nil},
		// hdr_len from the kernel is skb_headlen, a hint: HdrLen is computed.
		{"tcpv4 with options", hdr(vnetFlagNeedsCsum, vnetGSOTCPv4, 128, 1448, 34, 16), tcp4,
			frame.Offload{GSO: frame.GSOTCPv4, GSOSize: 1448, HdrLen: 66, NeedsCsum: true, CsumStart: 34, CsumOffset: 16}, nil},
		{"tcpv4 ecn", hdr(vnetFlagNeedsCsum, vnetGSOTCPv4|vnetGSOECN, 54, 1460, 34, 16), tcp4cwr,
			frame.Offload{GSO: frame.GSOTCPv4, GSOSize: 1460, HdrLen: 54, NeedsCsum: true, CsumStart: 34, CsumOffset: 16}, nil},
		{"tcpv6", hdr(vnetFlagNeedsCsum, vnetGSOTCPv6, 0, 1440, 54, 16), tcp6,
			frame.Offload{GSO: frame.GSOTCPv6, GSOSize: 1440, HdrLen: 74, NeedsCsum: true, CsumStart: 54, CsumOffset: 16}, nil},
		{"udp l4", hdr(vnetFlagNeedsCsum, vnetGSOUDPL4, 42, 1000, 34, 6), udp4,
			frame.Offload{GSO: frame.GSOUDPL4, GSOSize: 1000, HdrLen: 42, NeedsCsum: true, CsumStart: 34, CsumOffset: 6}, nil},
		{"ufo", hdr(vnetFlagNeedsCsum, vnetGSOUDP, 42, 1000, 34, 6), udp4, frame.Offload{}, errGSOType},
		{"unknown gso", hdr(vnetFlagNeedsCsum, 7, 0, 1000, 34, 16), tcp4, frame.Offload{}, errGSOType},
		{"ecn alone", hdr(0, vnetGSOECN, 0, 0, 0, 0), tcp4, frame.Offload{}, errGSOType},
		{"udp with ecn", hdr(vnetFlagNeedsCsum, vnetGSOUDPL4|vnetGSOECN, 0, 1000, 34, 6), udp4, frame.Offload{}, errGSOType},
		{"gso size 0", hdr(vnetFlagNeedsCsum, vnetGSOTCPv4, 0, 0, 34, 16), tcp4, frame.Offload{}, errGSOSize},
		{"gso without partial checksum", hdr(vnetFlagDataValid, vnetGSOTCPv4, 54, 1460, 0, 0), tcp4, frame.Offload{}, errGSOCsum},
		{"csum past the end", hdr(vnetFlagNeedsCsum, 0, 0, 0, 34, uint16(len(tcp4)-35)), tcp4, frame.Offload{}, errCsumRange},
		{"csum start huge", hdr(vnetFlagNeedsCsum, vnetGSOTCPv4, 0, 1460, 0xffff, 0xffff), tcp4, frame.Offload{}, errCsumRange},
		{"headers only", hdr(vnetFlagNeedsCsum, vnetGSOTCPv4, 0, 1460, 34, 16), l4Frame(20, 20, 0, false),
			frame.Offload{GSO: frame.GSOTCPv4, GSOSize: 1460, HdrLen: 54, NeedsCsum: true, CsumStart: 34, CsumOffset: 16}, nil},
		{"tcp header past the end", hdr(vnetFlagNeedsCsum, vnetGSOTCPv4, 0, 1460, 34, 16), tcp4[:60], frame.Offload{}, errL4Header},
	}
	// A TCP header whose data offset says 8 bytes.
	bad := l4Frame(20, 20, 100, false)
	bad[14+20+12] = 2 << 4
	tests = append(tests, struct {
		name string
		h    []byte
		data []byte
		want frame.Offload
		err  error
	}{"tcp data offset 8", hdr(vnetFlagNeedsCsum, vnetGSOTCPv4, 0, 1460, 34, 16), bad, frame.Offload{}, errL4Header})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o frame.Offload
			err := decodeVnet(tt.h, tt.data, &o)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err == nil && o != tt.want {
				t.Errorf("got  %+v\nwant %+v", o, tt.want)
			}
		})
	}
}

func TestEncodeVnet(t *testing.T) {
	tcp4 := l4Frame(20, 20, 3000, false)
	tcp4cwr := l4Frame(20, 20, 3000, true)
	udp6 := l4Frame(40, 0, 3000, false)
	tests := []struct {
		name string
		o    frame.Offload
		data []byte
		want []byte
		err  error
	}{
		{"plain", frame.Offload{}, tcp4, hdr(0, 0, 0, 0, 0, 0), nil},
		{"data valid", frame.Offload{CsumValid: true}, tcp4, hdr(vnetFlagDataValid, 0, 0, 0, 0, 0), nil},
		{"partial", frame.Offload{NeedsCsum: true, CsumStart: 34, CsumOffset: 16}, tcp4, hdr(vnetFlagNeedsCsum, 0, 0, 0, 34, 16), nil},
		{"gso size without gso is not sent", frame.Offload{GSOSize: 1460}, tcp4, hdr(0, 0, 0, 0, 0, 0), nil},
		{"tcpv4", frame.Offload{GSO: frame.GSOTCPv4, GSOSize: 1460, HdrLen: 54, NeedsCsum: true, CsumStart: 34, CsumOffset: 16},
			tcp4, hdr(vnetFlagNeedsCsum, vnetGSOTCPv4, 54, 1460, 34, 16), nil},
		{"tcpv4 cwr sets ecn", frame.Offload{GSO: frame.GSOTCPv4, GSOSize: 1460, HdrLen: 54, NeedsCsum: true, CsumStart: 34, CsumOffset: 16},
			tcp4cwr, hdr(vnetFlagNeedsCsum, vnetGSOTCPv4|vnetGSOECN, 54, 1460, 34, 16), nil},
		{"no gso, cwr: no ecn", frame.Offload{NeedsCsum: true, CsumStart: 34, CsumOffset: 16},
			tcp4cwr, hdr(vnetFlagNeedsCsum, 0, 0, 0, 34, 16), nil},
		{"udp l4 v6", frame.Offload{GSO: frame.GSOUDPL4, GSOSize: 1200, HdrLen: 62, NeedsCsum: true, CsumStart: 54, CsumOffset: 6},
			udp6, hdr(vnetFlagNeedsCsum, vnetGSOUDPL4, 62, 1200, 54, 6), nil},
		{"unknown gso", frame.Offload{GSO: 4, GSOSize: 1, NeedsCsum: true}, tcp4, nil, errGSOType},
		{"gso size 0", frame.Offload{GSO: frame.GSOTCPv6, NeedsCsum: true}, tcp4, nil, errGSOSize},
		{"gso without csum", frame.Offload{GSO: frame.GSOTCPv4, GSOSize: 1460}, tcp4, nil, errGSOCsum},
		{"csum past the end", frame.Offload{NeedsCsum: true, CsumStart: uint16(len(tcp4) - 1)}, tcp4, nil, errCsumRange},
		{"hdr len past the end", frame.Offload{HdrLen: uint16(len(tcp4) + 1)}, tcp4, nil, errHdrLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkOffload(&tt.o, len(tt.data))
			if !errors.Is(err, tt.err) {
				t.Fatalf("checkOffload: %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			h := make([]byte, vnetHdrLen)
			for i := range h {
				h[i] = 0xee // every byte must be written
			}
			encodeVnet(h, &tt.o, tt.data)
			if string(h) != string(tt.want) {
				t.Errorf("got  % x\nwant % x", h, tt.want)
			}
			// The legacy 10-byte form is the same without num_buffers.
			h10 := make([]byte, vnetHdrLenLegacy)
			encodeVnet(h10, &tt.o, tt.data)
			if string(h10) != string(tt.want[:vnetHdrLenLegacy]) {
				t.Errorf("10-byte form % x", h10)
			}
		})
	}
}

// What Read gives, Write sends back the same: the translation is exact.
func TestVnetRoundTrip(t *testing.T) {
	cases := []struct {
		h    []byte
		data []byte
	}{
		{hdr(vnetFlagNeedsCsum, vnetGSOTCPv4|vnetGSOECN, 54, 1460, 34, 16), l4Frame(20, 20, 5000, true)},
		{hdr(vnetFlagNeedsCsum, vnetGSOTCPv6, 74, 1440, 54, 16), l4Frame(40, 20, 5000, false)},
		{hdr(vnetFlagNeedsCsum, vnetGSOUDPL4, 42, 1000, 34, 6), l4Frame(20, 0, 5000, false)},
		{hdr(vnetFlagDataValid, 0, 0, 0, 0, 0), l4Frame(20, 20, 10, false)},
		{hdr(vnetFlagNeedsCsum|vnetFlagDataValid, 0, 0, 0, 34, 16), l4Frame(20, 20, 10, false)},
	}
	for _, c := range cases {
		var o frame.Offload
		if err := decodeVnet(c.h, c.data, &o); err != nil {
			t.Fatalf("% x: %v", c.h, err)
		}
		if err := checkOffload(&o, len(c.data)); err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		h := make([]byte, vnetHdrLen)
		encodeVnet(h, &o, c.data)
		if string(h) != string(c.h) {
			t.Errorf("%+v: got % x, want % x", o, h, c.h)
		}
	}
}

func TestDefaultGateways(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	tests := []struct {
		name  string
		addrs []netip.Prefix
		want  []netip.Addr
	}{
		{"none", nil, nil},
		{"v4 /24", []netip.Prefix{p("10.0.100.3/24")}, []netip.Addr{a("10.0.100.1")}},
		{"v4 is the first host", []netip.Prefix{p("10.0.100.1/24")}, []netip.Addr{a("169.254.1.1")}},
		{"v4 /30", []netip.Prefix{p("192.0.2.6/30")}, []netip.Addr{a("192.0.2.5")}},
		{"v4 /31", []netip.Prefix{p("192.0.2.6/31")}, []netip.Addr{a("169.254.1.1")}},
		{"v4 /32", []netip.Prefix{p("192.0.2.6/32")}, []netip.Addr{a("169.254.1.1")}},
		{"first v4 counts", []netip.Prefix{p("10.1.0.9/16"), p("10.2.0.9/24")}, []netip.Addr{a("10.1.0.1")}},
		{"v6 only", []netip.Prefix{p("2001:db8::5/64")}, []netip.Addr{a("fe80::1")}},
		{"v6 first, v4 still first", []netip.Prefix{p("2001:db8::5/128"), p("10.0.0.7/8")}, []netip.Addr{a("10.0.0.1"), a("fe80::1")}},
		{"invalid skipped", []netip.Prefix{{}, p("10.0.0.7/8")}, []netip.Addr{a("10.0.0.1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DefaultGateways(tt.addrs)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// FuzzVnet feeds any header and frame to the decoder: it never panics, and
// whatever it accepts is encodable and decodes again to the same Offload
// (the encoder's header is what Write would send for that frame).
func FuzzVnet(f *testing.F) {
	f.Add(hdr(vnetFlagNeedsCsum, vnetGSOTCPv4|vnetGSOECN, 54, 1460, 34, 16), l4Frame(20, 20, 3000, true))
	f.Add(hdr(vnetFlagNeedsCsum, vnetGSOTCPv6, 74, 1440, 54, 16), l4Frame(40, 20, 3000, false))
	f.Add(hdr(vnetFlagNeedsCsum, vnetGSOUDPL4, 42, 1000, 34, 6), l4Frame(20, 0, 3000, false))
	f.Add(hdr(vnetFlagDataValid, 0, 0, 0, 0, 0), l4Frame(20, 20, 10, false))
	f.Add(hdr(0xff, 0xff, 0xffff, 0xffff, 0xffff, 0xffff), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, h, data []byte) {
		if len(h) < vnetHdrLen {
			return
		}
		var o frame.Offload
		if decodeVnet(h, data, &o) != nil {
			return
		}
		if err := checkOffload(&o, len(data)); err != nil {
			t.Fatalf("decoded %+v is not encodable: %v", o, err)
		}
		h2 := make([]byte, vnetHdrLen)
		encodeVnet(h2, &o, data)
		var o2 frame.Offload
		if err := decodeVnet(h2, data, &o2); err != nil {
			t.Fatalf("re-encoded % x does not decode: %v", h2, err)
		}
		if o2 != o {
			t.Fatalf("round trip %+v -> %+v", o, o2)
		}
		if h2[0] != h[0]&(vnetFlagNeedsCsum|vnetFlagDataValid) || h2[1]&^vnetGSOECN != h[1]&^vnetGSOECN {
			t.Fatalf("flags/gso type % x -> % x", h[:2], h2[:2])
		}
	})
}

// FuzzOffload feeds any Offload and frame to the write side: checkOffload
// and encodeVnet never panic, and what they send decodes without going
// out of the frame.
func FuzzOffload(f *testing.F) {
	f.Add(uint8(1), uint16(1460), uint16(54), true, uint16(34), uint16(16), false, l4Frame(20, 20, 3000, false))
	f.Add(uint8(3), uint16(1000), uint16(42), true, uint16(34), uint16(6), true, l4Frame(20, 0, 3000, false))
	f.Add(uint8(9), uint16(0xffff), uint16(0xffff), true, uint16(0xffff), uint16(0xffff), true, []byte{})
	f.Fuzz(func(t *testing.T, gso uint8, size, hdrLen uint16, needs bool, start, off uint16, valid bool, data []byte) {
		o := frame.Offload{GSO: frame.GSOType(gso), GSOSize: size, HdrLen: hdrLen, NeedsCsum: needs,
			CsumStart: start, CsumOffset: off, CsumValid: valid}
		if checkOffload(&o, len(data)) != nil {
			return
		}
		h := make([]byte, vnetHdrLen)
		encodeVnet(h, &o, data)
		var o2 frame.Offload
		if decodeVnet(h, data, &o2) == nil {
			if o2.GSO != o.GSO || o2.NeedsCsum != o.NeedsCsum || o2.CsumValid != o.CsumValid {
				t.Fatalf("%+v sent as % x reads back as %+v", o, h, o2)
			}
		}
	})
}
