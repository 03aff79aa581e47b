// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The fast path's types and maps: what package fastpath writes and
// bpf/fastpath.c reads. Keep the structs in step with the Go bindings
// (go generate; bpf2go emits them from here).
#pragma once

#define MAX_PORTS 65536
#define MAX_MEMBERS 64 // nexthop.MaxMembers
#define MAX_SPORTS 16  // the engine's send sockets per UDP tunnel

enum nh_kind { NH_PORT = 1, NH_TUNNEL = 2, NH_VRF_LOOKUP = 3, NH_COMPOSITE = 4 };
enum encap { ENCAP_MPLSOUDP = 1, ENCAP_VXLAN = 3 };

struct config {
	__be32 underlay;     // this vRouter's underlay address (outer source)
	__u32 underlay_mtu;
	__u8 gw_mac[6];      // the virtual gateway MAC endpoints see
	__u8 router_mac[6];  // this node's EVPN router MAC (VXLAN inner source)
	__be16 mplsudp_port; // network order
	__be16 vxlan_port;
	// The outer UDP source ports: the engine's send sockets' (MPLSoUDP
	// first, then VXLAN), picked by the flow's hash as the engine picks.
	__u16 sports[2][MAX_SPORTS];
	__u8 nsports[2];
	__u16 pad;
};

// A composite next hop's members and their rendezvous-hash seeds.
struct members {
	__u32 n;
	__u32 ids[MAX_MEMBERS];
	__u64 seeds[MAX_MEMBERS];
};

struct port_info {
	__u32 id;
	__u32 vrf;
	__u32 network;
	__u32 veth_ifindex; // the host-side veth (its peer is the endpoint)
	__u32 tap_ifindex;  // the punt device the Go engine reads
	__u8 mac[6];        // the endpoint's MAC
	__u16 pad;
};

struct lpm_key {
	__u32 prefixlen; // 32 + prefix length
	__u32 id;        // VRF (routes) or port ID (sources)
	__be32 addr;
};

struct nexthop {
	__u8 kind;
	__u8 encap;
	__u16 pad;
	__u32 network;
	__u32 port;      // NH_PORT
	__u32 label;     // MPLS label or VNI (NH_TUNNEL), VRF (NH_VRF_LOOKUP)
	__be32 remote;   // NH_TUNNEL
	__u8 rmac[6];    // VXLAN inner destination
	__u16 pad2;
};

struct remote {
	__u32 oif;      // 0: not resolved, encap punts
	__be32 nh_addr; // the neighbour to send to (the remote or its gateway)
};

// One outer source a VRF accepts tunnel packets of one encapsulation
// from: a remote endpoint that a route of the VRF leads to (package
// vrouter/sources, the engine's own sets).
struct tunnel_source {
	__u32 vrf;
	__be32 addr;
	__u8 encap;
	__u8 pad[3];
};

struct flow_key {
	__u32 vrf;
	__be32 src, dst;
	__be16 sport, dport;
	__u8 proto;
	__u8 pad[3];
};

struct flow_val {
	__u32 src_net, dst_net;
	__u64 packets, bytes;
	__u64 last_ns; // bpf_ktime_get_ns of the latest packet
};

struct port_counters {
	__u64 rx_packets, rx_bytes; // from the endpoint
	__u64 tx_packets, tx_bytes; // into the endpoint
};

enum counter {
	C_ENCAP,       // sent into an MPLSoUDP tunnel by the kernel
	C_LOCAL,       // endpoint to endpoint in the kernel
	C_DECAP,       // delivered from an MPLSoUDP tunnel by the kernel
	C_PUNT,        // from an endpoint to the Go engine
	C_PUNT_TX,     // from the Go engine into an endpoint
	C_ERROR,       // a helper refused (packet dropped)
	C_ENCAP_VXLAN, // sent into a VXLAN tunnel by the kernel
	C_DECAP_VXLAN, // delivered from a VXLAN tunnel by the kernel
	C_MAX,
};

// The hash maps are not preallocated: the programs only look up (the
// vRouter writes), so this costs the data path nothing, and the kernel
// memory follows the tables instead of ~285 MB for the maximum sizes up
// front, more than a small node (a 256 MB VM) has.
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct config); } cfg SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, MAX_PORTS); __type(key, __u32); __type(value, struct port_info); } ports_by_ifindex SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, MAX_PORTS); __type(key, __u32); __type(value, struct port_info); } ports_by_id SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, MAX_PORTS); __type(key, __u32); __type(value, __u32); } taps SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, 262144); __type(key, struct lpm_key); __type(value, __u32); } sources SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, 1048576); __type(key, struct lpm_key); __type(value, __u32); } routes SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, 1048576); __type(key, __u32); __type(value, struct nexthop); } nexthops SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, 65536); __type(key, __u32); __type(value, struct members); } composites SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, 1048576); __type(key, __u32); __type(value, __u32); } labels SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, 65536); __type(key, __u32); __type(value, __u32); } vnis SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, 65536); __type(key, __be32); __type(value, struct remote); } remotes SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, 262144); __type(key, struct tunnel_source); __type(value, __u8); } tunnel_sources SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, 524288); __type(key, struct flow_key); __type(value, struct flow_val); } flows SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, MAX_PORTS); __type(key, __u32); __type(value, struct port_counters); } port_stats SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, C_MAX); __type(key, __u32); __type(value, __u64); } stats SEC(".maps");

// Debian 12's headers predate these (trap 1 of the study); the 6.1 kernel
// knows them.
#ifndef BPF_F_ADJ_ROOM_ENCAP_L2_ETH
#define BPF_F_ADJ_ROOM_ENCAP_L2_ETH (1ULL << 6)
#endif

#define AF_INET 2

#define MPLS_OVERHEAD (sizeof(struct iphdr) + sizeof(struct udphdr) + 4)
#define VXLAN_OVERHEAD (sizeof(struct iphdr) + sizeof(struct udphdr) + 8 + ETH_HLEN)
