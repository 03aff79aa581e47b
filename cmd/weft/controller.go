package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/controller"
	"github.com/weftnet/weft/controller/boot"
	"github.com/weftnet/weft/controller/dhcp"
	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/controller/pki"
	"github.com/weftnet/weft/controller/rr"
	"github.com/weftnet/weft/internal/mtu"
)

func init() {
	register("controller", "fleet controller: metadata service, fleet view, route reflector, DHCP and PXE boot files, probes (controller --inventory FILE)", runController)
}

// defaultState is the controller's state directory: its CA, the
// operator token, the operators' socket.
const defaultState = "/var/lib/weft/controller"

func runController(args []string) error {
	if len(args) > 0 && args[0] == "ca-hash" {
		return runControllerCAHash(args[1:])
	}
	fs := newFlags("controller", "controller --inventory FILE [flags]", "controller ca-hash [--state DIR]")
	inventory := fs.String("inventory", "", "inventory file: the fleet's weft.yaml and its nodes (required)")
	state := fs.String("state", defaultState, "state `DIR`: the CA (ca.key, ca.crt) and operator.token, made on the first start and kept; controller.sock")
	listen := fs.String("listen", ":80", "address of the metadata service, fleet API and web page (HTTPS; plain HTTP serves only the boot files)")
	bgpListen := fs.String("bgp-listen", "", "run the route reflector, accepting sessions on ADDR[:PORT] (port 179 by default)")
	asn := fs.Uint("asn", 0, "the reflector's AS number (default: the fleet's bgp.asn)")
	routerID := fs.String("router-id", "", "the reflector's router ID (default: the --bgp-listen address)")
	clients := fs.String("bgp-clients", "", "prefixes the reflector accepts sessions from, comma-separated (default: each inventory node's address)")
	fleetPassword := fs.Bool("bgp-fleet-password", false, "also accept, from the --bgp-clients prefixes, nodes that dial the reflector with the fleet's weft.yaml password (by default each node has its own, served in its user_data)")
	dhcpIface := fs.String("dhcp", "", "run a DHCPv4 server on interface `IFACE` for the inventory's nodes (by their macs, with their address)")
	dhcpRouter := fs.String("dhcp-router", "", "the router `ADDR` (option 3) DHCP offers (default: none)")
	dhcpLease := fs.Duration("dhcp-lease", dhcp.DefaultLeaseTime, "the DHCP lease time")
	dhcpMTU := fs.Int("dhcp-mtu", 0, "the MTU (option 26) DHCP offers: 0 = each node's underlay MTU from the inventory, -1 = none")
	imageDir := fs.String("image", "", "serve the PXE boot files in `DIR` (the output of weft image build) and /boot.ipxe for iPXE")
	cmdline := fs.String("cmdline", "", "kernel `PARAMS` /boot.ipxe adds after console=ttyS0 weft.config=https://<controller>:<port>/ weft.ca=sha256:… (with --image)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *inventory == "":
		return errors.New("--inventory is required")
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	opt := controller.Options{Inventory: *inventory, State: *state, Log: log}
	if *bgpListen != "" {
		rc, err := reflectorFlags(*bgpListen, *asn, *routerID, *clients)
		if err != nil {
			return err
		}
		rc.FleetPassword = *fleetPassword
		opt.Reflector = rc
	} else if *asn != 0 || *routerID != "" || *clients != "" || *fleetPassword {
		return errors.New("--asn, --router-id, --bgp-clients and --bgp-fleet-password configure the route reflector: give --bgp-listen too")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *dhcpIface != "" {
		switch {
		case *dhcpLease < time.Minute || *dhcpLease > 8760*time.Hour:
			return fmt.Errorf("--dhcp-lease %v: want 1m..8760h", *dhcpLease)
		case *dhcpMTU != 0 && *dhcpMTU != -1 && (*dhcpMTU < mtu.Min || *dhcpMTU > mtu.Max):
			return fmt.Errorf("--dhcp-mtu %d: want %d..%d, 0 (each node's underlay MTU) or -1 (none)", *dhcpMTU, mtu.Min, mtu.Max)
		}
		dc := &dhcp.Config{Interface: *dhcpIface, LeaseTime: *dhcpLease, MTU: *dhcpMTU}
		if *dhcpRouter != "" {
			if dc.Router, err = netip.ParseAddr(*dhcpRouter); err != nil || !dc.Router.Is4() {
				return fmt.Errorf("--dhcp-router %q: want an IPv4 address", *dhcpRouter)
			}
		}
		opt.DHCP = dc
	} else if set["dhcp-router"] || set["dhcp-lease"] || set["dhcp-mtu"] {
		return errors.New("--dhcp-router, --dhcp-lease and --dhcp-mtu configure the DHCP server: give --dhcp IFACE too")
	}
	if *imageDir != "" {
		opt.Boot = &boot.Config{Dir: *imageDir, Cmdline: *cmdline}
	} else if *cmdline != "" {
		return errors.New("--cmdline is for the boot files' iPXE script: give --image DIR too")
	}
	srv, err := controller.New(opt)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the inventory", "inventory", srv.Inventory().Path)
				srv.Reload() // logs its outcome; a refused inventory keeps the last good one
			}
		}
	}()
	return srv.Serve(ctx, ln)
}

// runControllerCAHash prints the pin of the controller's CA: what nodes
// need as weft.ca= (and operators as --ca) to trust it.
func runControllerCAHash(args []string) error {
	fs := newFlags("controller ca-hash", "controller ca-hash [--state DIR]")
	state := fs.String("state", defaultState, "the controller's state `DIR`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	pin, err := fleetapi.ReadPinFile(filepath.Join(*state, pki.CertFile))
	if err != nil {
		return fmt.Errorf("the controller's CA (made at its first start): %w", err)
	}
	fmt.Println(pin)
	return nil
}

func reflectorFlags(listen string, asn uint, routerID, clients string) (*rr.Config, error) {
	rc := &rr.Config{}
	host, port := listen, "179"
	if h, p, err := net.SplitHostPort(listen); err == nil {
		host, port = h, p
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("--bgp-listen %q: port %q: want 1..65535", listen, port)
	}
	var a netip.Addr
	if host != "" {
		if a, err = netip.ParseAddr(host); err != nil {
			return nil, fmt.Errorf("--bgp-listen %q: %q is not an IP address", listen, host)
		}
	}
	rc.Listen = netip.AddrPortFrom(a, uint16(n))
	if asn > 0xffffffff {
		return nil, fmt.Errorf("--asn %d: want 1..4294967295", asn)
	}
	rc.ASN = uint32(asn)
	if routerID != "" {
		if rc.RouterID, err = netip.ParseAddr(routerID); err != nil || !rc.RouterID.Is4() {
			return nil, fmt.Errorf("--router-id %q: want an IPv4 address", routerID)
		}
	}
	for f := range strings.SplitSeq(clients, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("--bgp-clients: %q is not a prefix (like 10.0.2.0/24)", f)
		}
		rc.Clients = append(rc.Clients, p.Masked())
	}
	return rc, nil
}
