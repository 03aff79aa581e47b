package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftnet/weft/agent/bgp"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// collector reads the agent and the vRouter at scrape time, so that the
// figures are never older than the scrape.
type collector struct {
	r   *reconciler
	rib *rib
}

var (
	mSession  = prometheus.NewDesc("weft_bgp_session_up", "1 when the BGP session to the peer is established.", []string{"peer"}, nil)
	mFlaps    = prometheus.NewDesc("weft_bgp_session_flaps_total", "Sessions that went down soon after coming up.", []string{"peer"}, nil)
	mBad      = prometheus.NewDesc("weft_bgp_malformed_updates_total", "UPDATEs treated as withdraw or that reset the session.", []string{"peer"}, nil)
	mReceived = prometheus.NewDesc("weft_bgp_routes_received", "Routes in the peer's Adj-RIB-In.", []string{"peer", "family"}, nil)
	mRoutes   = prometheus.NewDesc("weft_vrf_routes", "Routes installed in the vRouter, per network.", []string{"network"}, nil)
	mAnnounce = prometheus.NewDesc("weft_routes_announced", "Routes this node advertises.", nil, nil)
	mPortRx   = prometheus.NewDesc("weft_port_rx_packets_total", "Frames received from the endpoint.", []string{"port"}, nil)
	mPortTx   = prometheus.NewDesc("weft_port_tx_packets_total", "Frames sent to the endpoint.", []string{"port"}, nil)
	mPortRxB  = prometheus.NewDesc("weft_port_rx_bytes_total", "Bytes received from the endpoint.", []string{"port"}, nil)
	mPortTxB  = prometheus.NewDesc("weft_port_tx_bytes_total", "Bytes sent to the endpoint.", []string{"port"}, nil)
	mPortDrop = prometheus.NewDesc("weft_port_drops_total", "Frames of the port dropped by the vRouter.", []string{"port"}, nil)
	mDrops    = prometheus.NewDesc("weft_vrouter_drops_total", "Packets the vRouter dropped, by reason.", []string{"reason"}, nil)
	mTunRx    = prometheus.NewDesc("weft_tunnel_rx_total", "Underlay datagrams received, by encapsulation.", []string{"encap"}, nil)
	mTunTx    = prometheus.NewDesc("weft_tunnel_tx_total", "Underlay datagrams sent, by encapsulation.", []string{"encap"}, nil)
	mRule     = prometheus.NewDesc("weft_policy_rule_flows_total", "Flows a policy rule allowed.", []string{"rule"}, nil)
	mDenied   = prometheus.NewDesc("weft_policy_denied_flows_total", "Flows no rule allowed.", nil, nil)
	mQuota    = prometheus.NewDesc("weft_flow_quota_hits_total", "New flows not cached because their network's VRF held its quota of the flow table.", []string{"network"}, nil)
	mFull     = prometheus.NewDesc("weft_flow_table_full_total", "New flows not cached because the flow table was full.", nil, nil)
	mReconc   = prometheus.NewDesc("weft_reconciles_total", "Reconciles of the vRouter's state.", nil, nil)
	mSynced   = prometheus.NewDesc("weft_synced", "1 once the routes are relearnt after a start.", nil, nil)
	mBadNH    = prometheus.NewDesc("weft_bgp_paths_nexthop_not_tunnel_endpoint", "Received paths whose next hop is not a tunnel endpoint (traffic to them is blackholed), per peer.", []string{"peer"}, nil)
	mNetRcvd  = prometheus.NewDesc("weft_network_paths_received", "Best paths from BGP the network's VRF imports.", []string{"network"}, nil)
	mNetAcc   = prometheus.NewDesc("weft_network_paths_accepted", "Imported paths that became routes (an encapsulation both ends have).", []string{"network"}, nil)
	mNetInst  = prometheus.NewDesc("weft_network_remote_routes_installed", "Remote routes (tunnel or ECMP) installed in the network's VRF.", []string{"network"}, nil)
	mConv     = prometheus.NewDesc("weft_bgp_last_convergence_seconds", "Time the last full convergence took: a session's Established to every route received by its End-of-RIB installed.", []string{"peer"}, nil)
	mRefused  = prometheus.NewDesc("weft_vrouter_refused_ops", "vRouter ops refused and held back, by the endpoint they are for (\"\" for none).", []string{"endpoint"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mSession, mFlaps, mBad, mReceived, mRoutes, mAnnounce, mPortRx, mPortTx, mPortRxB, mPortTxB,
		mPortDrop, mDrops, mTunRx, mTunTx, mRule, mDenied, mQuota, mFull, mReconc, mSynced, mBadNH, mRefused, mNetRcvd, mNetAcc, mNetInst, mConv} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	var sp *bgp.Speaker
	perNet := map[string]int{}
	var reconciles uint64
	refused := map[string]int{}
	vrfNames := map[uint32]string{}
	var nets []networkRoutes
	c.r.view(func(fw *forwarding) {
		sp = fw.speaker
		nets = perNetwork(fw.imported, fw.installed)
		if fw.installed != nil {
			for r := range fw.installed.Routes {
				perNet[fw.installed.VRFs[r.VRF].GetName()]++
			}
			for id, v := range fw.installed.VRFs {
				vrfNames[id] = v.GetName()
			}
		}
		reconciles = fw.stats.Count
		for _, rf := range fw.refused {
			refused[rf.endpoint]++
		}
	})
	synced := c.rib.isSynced()
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	if sp != nil {
		for _, p := range sp.Peers() {
			up := 0.0
			if p.State == bgp.StateEstablished {
				up = 1
			}
			gauge(mSession, up, p.Address.String())
			counter(mFlaps, float64(p.Flaps), p.Address.String())
			counter(mBad, float64(p.MalformedUpdates), p.Address.String())
			for _, f := range p.Families {
				gauge(mReceived, float64(f.Received), p.Address.String(), f.Family.String())
			}
		}
		gauge(mAnnounce, float64(len(sp.Announced())))
	}
	for n, v := range perNet {
		gauge(mRoutes, float64(v), n)
	}
	for _, n := range nets {
		gauge(mNetRcvd, float64(n.Received), n.Network)
		gauge(mNetAcc, float64(n.Accepted), n.Network)
		gauge(mNetInst, float64(n.Installed), n.Network)
	}
	if conv, ok := c.rib.lastConvergence(); ok {
		gauge(mConv, conv.Took().Seconds(), conv.Peer.String())
	}
	counter(mReconc, float64(reconciles))
	for ep, n := range refused {
		gauge(mRefused, float64(n), ep)
	}
	s := 0.0
	if synced {
		s = 1
	}
	gauge(mSynced, s)
	if c.r.endpoints != nil {
		for _, w := range c.r.endpoints.report() {
			gauge(mBadNH, float64(w.Paths), w.Peer)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	vc, err := c.r.vr.Counters(ctx, &vrouterv1.CountersRequest{})
	if err != nil {
		return
	}
	for _, p := range vc.GetPorts() {
		counter(mPortRx, float64(p.GetRxPackets()), p.GetName())
		counter(mPortTx, float64(p.GetTxPackets()), p.GetName())
		counter(mPortRxB, float64(p.GetRxBytes()), p.GetName())
		counter(mPortTxB, float64(p.GetTxBytes()), p.GetName())
		counter(mPortDrop, float64(p.GetDrops()), p.GetName())
	}
	for r, v := range vc.GetDrops() {
		counter(mDrops, float64(v), r)
	}
	for e, v := range vc.GetTunnelRx() {
		counter(mTunRx, float64(v), e)
	}
	for e, v := range vc.GetTunnelTx() {
		counter(mTunTx, float64(v), e)
	}
	for id, v := range vc.GetRuleHits() {
		counter(mRule, float64(v), fmt.Sprint(id))
	}
	counter(mDenied, float64(vc.GetPolicyDenied()))
	counter(mFull, float64(vc.GetFlowTableFull()))
	for id, v := range vc.GetFlowQuotaHits() {
		name := vrfNames[id]
		if name == "" {
			name = fmt.Sprintf("vrf-%d", id) // a VRF the agent no longer knows
		}
		counter(mQuota, float64(v), name)
	}
}

// serveMetrics serves /metrics on addr.
func serveMetrics(addr string, c collector, log *slog.Logger) (*http.Server, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	log.Info("metrics", "addr", ln.Addr().String())
	return srv, nil
}
