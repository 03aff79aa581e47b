package agent_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	gobgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// The route injector of the route benchmarks: a bare BGP speaker that
// packs its routes into as few UPDATEs as fit (GoBGP's AddPath sends one
// UPDATE per route, at 3-5k routes/s: too slow to load a million). It runs
// in a child of the test binary inside its own host on the fabric.

// injectorLoaded is the line the injector prints on stdout once it has
// sent every route and its End-of-RIB.
const injectorLoaded = "LOADED"

// injectAddr is the injector's address: one remote node's next hop and RD.
const injectAddr = "192.0.2.200"

// injectRoutes connects to the reflector, announces n VPNv4 /32 routes
// (each with a label of its own, route target 64512:100, MPLSoUDP and
// origin-vn 100, as a remote Weft node sends them) and holds them until
// the benchmark kills it.
func injectRoutes(n int) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(injectAddr)}, Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if c, err = d.Dial("tcp", net.JoinHostPort(rrAddr, "179")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dialing the reflector: %w", err)
		}
	}
	defer c.Close()
	w := &msgWriter{c: c}
	caps := []gobgp.ParameterCapabilityInterface{gobgp.NewCapMultiProtocol(gobgp.RF_IPv4_VPN), gobgp.NewCapFourOctetASNumber(64512)}
	if err := w.send(gobgp.NewBGPOpenMessage(64512, 90, injectAddr, []gobgp.OptionParameterInterface{gobgp.NewOptionParameterCapability(caps)})); err != nil {
		return err
	}
	// OPEN, then KEEPALIVE: the session is established.
	for _, want := range []uint8{gobgp.BGP_MSG_OPEN, gobgp.BGP_MSG_KEEPALIVE} {
		t, err := readMsg(c)
		if err != nil {
			return fmt.Errorf("session to the reflector: %w", err)
		}
		if t != want {
			return fmt.Errorf("session to the reflector: message type %d, expected %d", t, want)
		}
		if t == gobgp.BGP_MSG_OPEN {
			if err := w.send(gobgp.NewBGPKeepAliveMessage()); err != nil {
				return err
			}
		}
	}
	go func() { // drain what the reflector sends, keep the session alive
		for {
			if _, err := readMsg(c); err != nil {
				return
			}
		}
	}()
	go func() {
		// Every second: the reflector's hold time may be a few seconds
		// (the lab's is 9), and a dropped session takes the routes.
		for range time.Tick(time.Second) {
			w.send(gobgp.NewBGPKeepAliveMessage())
		}
	}()
	rd := gobgp.NewRouteDistinguisherIPAddressAS(injectAddr, 1)
	ov := make([]byte, 7) // origin-vn 64512:100 (Contrail's; agent/bgp's codec)
	ov[0] = 0x71
	binary.BigEndian.PutUint16(ov[1:], 64512)
	binary.BigEndian.PutUint32(ov[3:], 100)
	ecs := gobgp.NewPathAttributeExtendedCommunities([]gobgp.ExtendedCommunityInterface{
		gobgp.NewTwoOctetAsSpecificExtended(gobgp.EC_SUBTYPE_ROUTE_TARGET, 64512, 100, true),
		gobgp.NewEncapExtended(gobgp.TUNNEL_TYPE_MPLS_IN_UDP),
		gobgp.NewUnknownExtended(0x80, ov),
	})
	// 16 bytes per NLRI: 240 fill most of a 4096-byte UPDATE.
	const perUpdate = 240
	for i := 0; i < n; i += perUpdate {
		var nlris []gobgp.AddrPrefixInterface
		for j := i; j < min(n, i+perUpdate); j++ {
			a := netip.AddrFrom4([4]byte{10, byte(100 + j>>16), byte(j >> 8), byte(j)})
			nlris = append(nlris, gobgp.NewLabeledVPNIPAddrPrefix(32, a.String(), *gobgp.NewMPLSLabelStack(uint32(16 + j)), rd))
		}
		attrs := []gobgp.PathAttributeInterface{
			gobgp.NewPathAttributeOrigin(gobgp.BGP_ORIGIN_ATTR_TYPE_IGP),
			gobgp.NewPathAttributeAsPath(nil),
			gobgp.NewPathAttributeLocalPref(100),
			gobgp.NewPathAttributeMpReachNLRI(injectAddr, nlris),
			ecs,
		}
		if err := w.send(gobgp.NewBGPUpdateMessage(nil, attrs, nil)); err != nil {
			return err
		}
	}
	if err := w.send(gobgp.NewEndOfRib(gobgp.RF_IPv4_VPN)); err != nil {
		return err
	}
	fmt.Println(injectorLoaded)
	time.Sleep(time.Hour) // killed by the benchmark
	return nil
}

type msgWriter struct {
	mu sync.Mutex
	c  net.Conn
}

func (w *msgWriter) send(m *gobgp.BGPMessage) error {
	b, err := m.Serialize()
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.c.Write(b)
	return err
}

// readMsg reads one BGP message and returns its type.
func readMsg(c net.Conn) (uint8, error) {
	h := make([]byte, gobgp.BGP_HEADER_LENGTH)
	if _, err := io.ReadFull(c, h); err != nil {
		return 0, err
	}
	l := int(binary.BigEndian.Uint16(h[16:18]))
	if l < gobgp.BGP_HEADER_LENGTH {
		return 0, fmt.Errorf("message length %d", l)
	}
	if _, err := io.CopyN(io.Discard, c, int64(l-gobgp.BGP_HEADER_LENGTH)); err != nil {
		return 0, err
	}
	if h[18] == gobgp.BGP_MSG_NOTIFICATION {
		return 0, fmt.Errorf("the reflector sent a NOTIFICATION")
	}
	return h[18], nil
}
