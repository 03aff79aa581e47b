package controller

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/weftnet/weft/controller/access"
	"github.com/weftnet/weft/controller/boot"
	"github.com/weftnet/weft/controller/httpx"
)

// SocketFile is the operators' unix socket in the state directory.
const SocketFile = "controller.sock"

// The transport: one listener (--listen) serves TLS to every client that
// starts with a TLS handshake, and plain HTTP, limited to the boot files,
// to the others (iPXE and firmware fetch those). One port keeps DHCP's
// boot URL, the inventory's and every firewall rule as they were; the
// first byte tells the two apart (a TLS record starts with 0x16, an HTTP
// request with a method's letter).

// sniffTimeout bounds how long a connection may take to send its first
// byte before it is dropped.
const sniffTimeout = 10 * time.Second

// splitTLS divides ln's connections by their first byte.
func splitTLS(ln net.Listener) (tlsLn, plainLn net.Listener) {
	sp := &split{ln: ln, tls: make(chan net.Conn), plain: make(chan net.Conn), done: make(chan struct{})}
	go sp.run()
	return &splitSide{sp, sp.tls}, &splitSide{sp, sp.plain}
}

type split struct {
	ln         net.Listener
	tls, plain chan net.Conn
	done       chan struct{} // closed when ln fails or is closed
	closeOnce  sync.Once
}

func (sp *split) run() {
	defer sp.close()
	for {
		c, err := sp.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go sp.sniff(c)
	}
}

func (sp *split) sniff(c net.Conn) {
	var b [1]byte
	c.SetReadDeadline(time.Now().Add(sniffTimeout))
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	to := sp.plain
	if b[0] == 0x16 { // TLS handshake record
		to = sp.tls
	}
	select {
	case to <- &sniffed{Conn: c, first: b[:]}:
	case <-sp.done:
		c.Close()
	}
}

func (sp *split) close() {
	sp.closeOnce.Do(func() {
		close(sp.done)
		sp.ln.Close()
	})
}

// splitSide is one of the two listeners splitTLS makes. Closing either
// closes the listener they share.
type splitSide struct {
	sp *split
	ch chan net.Conn
}

func (s *splitSide) Accept() (net.Conn, error) {
	select {
	case c := <-s.ch:
		return c, nil
	case <-s.sp.done:
		return nil, net.ErrClosed
	}
}

func (s *splitSide) Close() error   { s.sp.close(); return nil }
func (s *splitSide) Addr() net.Addr { return s.sp.ln.Addr() }

// sniffed is a connection whose first byte was read already.
type sniffed struct {
	net.Conn
	first []byte
}

func (c *sniffed) Read(p []byte) (int, error) {
	if len(c.first) > 0 && len(p) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// plainHandler is what plain HTTP serves: the boot files, and for
// anything else a 403 that says where the API is and which CA to pin.
func (s *Server) plainHandler() http.Handler {
	bootH := s.bootHandler()
	pin := s.ca.Pin()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+boot.ScriptPath, bootH.Script)
	mux.HandleFunc("GET "+boot.Dir+"{file}", bootH.File)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpx.Plain(w, http.StatusForbidden, "weft controller: plain http serves only %s and %s*: use %s with the controller's CA pinned, weft.ca=%s (weft controller ca-hash prints it)",
			boot.ScriptPath, boot.Dir, boot.HTTPSBase(r.Host), pin)
	})
	return mux
}

// tlsConfig is the HTTPS server's: a certificate issued now for the
// addresses clients may dial (the listen address, or every local address
// when it is unspecified; the DHCP interface's; loopback) and the host's
// name.
func (s *Server) tlsConfig() (*tls.Config, error) {
	var listen netip.AddrPort
	if ap := s.listen.Load(); ap != nil {
		listen = *ap
	}
	var dhcpAddrs []netip.Prefix
	s.mu.Lock()
	if s.dhcp != nil {
		dhcpAddrs = s.dhcp.Info().Addresses
	}
	s.mu.Unlock()
	ips := []netip.Addr{netip.IPv6Loopback(), netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	add := func(a netip.Addr) {
		a = a.Unmap().WithZone("")
		for _, x := range ips {
			if x == a {
				return
			}
		}
		ips = append(ips, a)
	}
	if a := listen.Addr().Unmap(); a.IsValid() && !a.IsUnspecified() {
		add(a)
	} else if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range addrs {
			if n, ok := ia.(*net.IPNet); ok {
				if a, ok := netip.AddrFromSlice(n.IP); ok && !a.IsLinkLocalUnicast() {
					add(a)
				}
			}
		}
	}
	for _, p := range dhcpAddrs {
		add(p.Addr())
	}
	names := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		names = append(names, h)
	}
	cert, err := s.ca.Issue(ips, names)
	if err != nil {
		return nil, err
	}
	var ipStrs []string
	for _, a := range ips {
		ipStrs = append(ipStrs, a.String())
	}
	s.log.Info("server certificate issued", "ips", ipStrs, "names", names, "ca", s.ca.Pin().String(), "until", cert.Leaf.NotAfter.Format(time.DateOnly))
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// servers are the controller's HTTP servers while Serve runs: HTTPS and
// plain HTTP on the listener, the API on the operators' unix socket.
type servers struct {
	all  []*http.Server
	errc chan error
}

func (s *Server) startHTTP(ln net.Listener, conf *tls.Config) (*servers, error) {
	sock, err := access.ListenSocket(filepath.Join(s.opt.State, SocketFile))
	if err != nil {
		return nil, err
	}
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	api := s.Handler()
	tlsLn, plainLn := splitTLS(ln)
	hs, plain, local := newServer(api), newServer(s.plainHandler()), newServer(api)
	local.ConnContext = access.ConnContext
	sv := &servers{all: []*http.Server{hs, plain, local}, errc: make(chan error, 3)}
	go func() { sv.errc <- hs.Serve(tls.NewListener(tlsLn, conf)) }()
	go func() { sv.errc <- plain.Serve(plainLn) }()
	go func() { sv.errc <- local.Serve(sock) }()
	return sv, nil
}
