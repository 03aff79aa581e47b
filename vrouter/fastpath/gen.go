package fastpath

// The objects are generated and committed, so that `make build` needs no
// clang; `make bpf` regenerates them (clang, llvm, libbpf-dev from Debian).
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -I/usr/include/x86_64-linux-gnu" -target bpfel -type config -type port_info -type lpm_key -type nexthop -type members -type remote -type tunnel_source -type flow_key -type flow_val -type port_counters fp bpf/fastpath.c
