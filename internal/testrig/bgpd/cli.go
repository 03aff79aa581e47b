package bgpd

// CLI runs commands in the daemon's own CLI (vtysh -c for each of FRR's,
// gobgp's or birdc's arguments), for a test that changes the daemon's
// configuration while it runs: `configure terminal`, a route-map, a
// `clear bgp ... soft out`.
func (r *Daemon) CLI(args ...string) (string, error) { return r.cli(args...) }
