// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Weft's in-kernel fast path: three TCX ingress programs over maps that
// only the vRouter process writes (package vrouter/fastpath).
//
//   port_ingress     on an endpoint's host-side veth: forwards an IPv4
//                    TCP/UDP packet the maps can judge (anti-spoofing, VRF
//                    LPM, the flow's policy decision, MPLSoUDP/VXLAN encap or
//                    delivery to another local endpoint); everything else
//                    goes to the endpoint's TAP, which the Go engine reads.
//   punt_ingress     on that TAP: what the Go engine writes goes into the
//                    endpoint (the veth's peer).
//   underlay_ingress on the underlay device: decapsulates MPLSoUDP/VXLAN
//                    from programmed remote tunnel endpoints into the
//                    endpoint; everything else continues to the vRouter's
//                    UDP sockets, the slow path.
//
// The rule everywhere: a packet the maps cannot judge goes to the Go
// engine, never through.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual BSD/GPL";

#include "maps.h"
#include "hash.h"

static __always_inline void count(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &c);
	if (v)
		*v += 1;
}

static __always_inline void count_port(__u32 id, __u32 len, int tx)
{
	struct port_counters *c = bpf_map_lookup_elem(&port_stats, &id);
	if (!c)
		return;
	if (tx) {
		c->tx_packets++;
		c->tx_bytes += len;
	} else {
		c->rx_packets++;
		c->rx_bytes += len;
	}
}

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
}

static __always_inline void mac_set(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, 6);
}

static __always_inline struct nexthop *route_id(__u32 vrf, __be32 addr, __u32 *id)
{
	struct lpm_key k = { .prefixlen = 64, .id = vrf, .addr = addr };
	__u32 *v = bpf_map_lookup_elem(&routes, &k);
	if (!v)
		return 0;
	*id = *v;
	return bpf_map_lookup_elem(&nexthops, v);
}

// allowed mirrors the Go engine's policy: inside one network always, else
// only a flow the engine cached as allowed for exactly these networks.
// TCP SYN, FIN and RST never get here (the engine tracks them).
static __always_inline int allowed(__u32 vrf, struct iphdr *ip, __be16 sport, __be16 dport,
				   __u32 src_net, __u32 dst_net, __u32 len)
{
	if (src_net == dst_net)
		return 1;
	struct flow_key k = { .vrf = vrf, .src = ip->saddr, .dst = ip->daddr,
			      .sport = sport, .dport = dport, .proto = ip->protocol };
	struct flow_val *v = bpf_map_lookup_elem(&flows, &k);
	if (!v || v->src_net != src_net || v->dst_net != dst_net)
		return 0;
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, len);
	v->last_ns = bpf_ktime_get_ns();
	return 1;
}

// l4 reads the ports of a TCP, UDP or ICMP echo packet at l4 (IPv4 without
// options); 0 for anything the fast path does not take.
static __always_inline int l4(void *l4, void *end, __u8 proto, __be16 *sport, __be16 *dport)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *t = l4;
		if ((void *)(t + 1) > end)
			return 0;
		if (t->syn || t->fin || t->rst)
			return 0;
		*sport = t->source;
		*dport = t->dest;
		return 1;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *u = l4;
		if ((void *)(u + 1) > end)
			return 0;
		*sport = u->source;
		*dport = u->dest;
		return 1;
	}
	if (proto == IPPROTO_ICMP) {
		// Echo request and reply carry their identifier in both ports,
		// as the engine's flow tuple does; ICMP errors are the engine's.
		__u8 *h = l4;
		if ((void *)(h + 8) > end || (h[0] != 8 && h[0] != 0))
			return 0;
		*sport = *dport = *(__be16 *)(h + 4);
		return 1;
	}
	return 0;
}

static __always_inline __u16 csum_fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

static __always_inline int punt(struct port_info *p)
{
	count(C_PUNT);
	return bpf_redirect(p->tap_ifindex, 0);
}

static __always_inline void dec_ttl(struct iphdr *ip)
{
	// RFC 1624 incremental update for a TTL decrement.
	__u32 sum = (__u32)ip->check + (__u32)bpf_htons(0x0100);
	ip->check = (__u16)(sum + (sum >> 16));
	ip->ttl--;
}

struct outer {
	struct iphdr ip;
	struct udphdr udp;
	__be32 tag; // MPLS label stack entry, or the first word of VXLAN
};

SEC("tc")
int port_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ingress_ifindex;
	struct port_info *p = bpf_map_lookup_elem(&ports_by_ifindex, &ifindex);
	if (!p)
		return TC_ACT_OK;
	__u32 key = 0;
	struct config *c = bpf_map_lookup_elem(&cfg, &key);
	if (!c)
		return punt(p);

	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return punt(p);
	// Anti-spoofing (MAC) and the gateway as the L2 destination.
	if (!mac_eq(eth->h_source, p->mac) || !mac_eq(eth->h_dest, c->gw_mac))
		return punt(p);
	if (ip->ihl != 5 || ip->version != 4 || (ip->frag_off & bpf_htons(0x3fff)) || ip->ttl <= 1)
		return punt(p);
	__be16 sport = 0, dport = 0;
	if (!l4(ip + 1, end, ip->protocol, &sport, &dport))
		return punt(p);
	// Anti-spoofing (IP): a source the port may use.
	struct lpm_key sk = { .prefixlen = 64, .id = p->id, .addr = ip->saddr };
	if (!bpf_map_lookup_elem(&sources, &sk))
		return punt(p);
	__u32 top_id = 0;
	struct nexthop *top = route_id(p->vrf, ip->daddr, &top_id);
	if (!top)
		return punt(p);
	__u64 hash = flow_hash(ip->saddr, ip->daddr, sport, dport, ip->protocol);
	struct nexthop *nh = top;
	if (top->kind == NH_COMPOSITE) {
		nh = select_member(top_id, hash);
		if (!nh)
			return punt(p);
	}
	// The destination's network: the route's, else its member's.
	__u32 dst_net = top->network ? top->network : nh->network;
	__u32 len = skb->len;
	if (nh->kind == NH_PORT) {
		__u32 dport_id = nh->port;
		struct port_info *d = bpf_map_lookup_elem(&ports_by_id, &dport_id);
		if (!d || !d->veth_ifindex)
			return punt(p);
		if (dst_net != p->network && !allowed(p->vrf, ip, sport, dport, p->network, dst_net, len))
			return punt(p);
		// Decided again as the destination's vRouter would (Go's forward).
		if (d->network != p->network && !allowed(d->vrf, ip, sport, dport, p->network, d->network, len))
			return punt(p);
		dec_ttl(ip);
		mac_set(eth->h_dest, d->mac);
		mac_set(eth->h_source, c->gw_mac);
		count(C_LOCAL);
		count_port(p->id, len, 0);
		count_port(d->id, len, 1);
		return bpf_redirect_peer(d->veth_ifindex, 0);
	}
	if (nh->kind != NH_TUNNEL || (nh->encap != ENCAP_MPLSOUDP && nh->encap != ENCAP_VXLAN))
		return punt(p);
	if (dst_net != p->network && !allowed(p->vrf, ip, sport, dport, p->network, dst_net, len))
		return punt(p);
	__be32 rip = nh->remote;
	struct remote *r = bpf_map_lookup_elem(&remotes, &rip);
	if (!r || !r->oif)
		return punt(p);
	int vx = nh->encap == ENCAP_VXLAN;
	__u32 ovh = vx ? VXLAN_OVERHEAD : MPLS_OVERHEAD;
	// Oversize packets go to the engine, which sends frag-needed (DF) or
	// lets the kernel fragment the outer packet (trap 4: adjust_room
	// checks no MTU).
	if (skb->gso_segs > 1) {
		// One segment: IP and TCP (or UDP) headers plus gso_size.
		__u32 l4h = sizeof(struct udphdr);
		if (ip->protocol == IPPROTO_TCP) {
			struct tcphdr *t = (void *)(ip + 1);
			if ((void *)(t + 1) > end)
				return punt(p);
			l4h = t->doff * 4;
		}
		if (skb->gso_size + sizeof(struct iphdr) + l4h + ovh > c->underlay_mtu)
			return punt(p);
	} else if (len - ETH_HLEN + ovh > c->underlay_mtu) {
		return punt(p);
	}
	__u32 label = nh->label;
	__u8 rmac[6];
	mac_set(rmac, nh->rmac);
	__be32 nh_addr = r->nh_addr;
	__u32 oif = r->oif;
	__u16 outer_sport = pick_sport(c, vx, hash);
	if (!outer_sport)
		return punt(p);
	__be16 udp_dport = vx ? c->vxlan_port : c->mplsudp_port;
	__be32 saddr = c->underlay;
	__u8 router_mac[6];
	mac_set(router_mac, c->router_mac);
	dec_ttl(ip);
	__u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_FIXED_GSO;
	flags |= vx ? (BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN) | BPF_F_ADJ_ROOM_ENCAP_L2_ETH) : BPF_F_ADJ_ROOM_ENCAP_L2(4);
	if (bpf_skb_adjust_room(skb, ovh, BPF_ADJ_ROOM_MAC, flags)) {
		count(C_ERROR);
		return TC_ACT_SHOT;
	}
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	struct outer *o = data + ETH_HLEN;
	if ((void *)(o + 1) > end)
		return TC_ACT_SHOT;
	__u16 tot = skb->len - ETH_HLEN;
	o->ip = (struct iphdr){ .version = 4, .ihl = 5, .tot_len = bpf_htons(tot), .frag_off = bpf_htons(0x4000),
				.ttl = 64, .protocol = IPPROTO_UDP, .saddr = saddr, .daddr = rip };
	__u32 sum = 0;
	__u16 *w = (__u16 *)&o->ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	o->ip.check = csum_fold(sum);
	// Outer UDP checksum 0 (trap 5): segmentation only fixes the length.
	o->udp = (struct udphdr){ .source = bpf_htons(outer_sport), .dest = udp_dport,
				  .len = bpf_htons(tot - sizeof(struct iphdr)), .check = 0 };
	if (vx) {
		struct { __be32 flags, vni; struct ethhdr eth; } *v = (void *)&o->tag;
		if ((void *)(v + 1) > end)
			return TC_ACT_SHOT;
		v->flags = bpf_htonl(0x08000000);
		v->vni = bpf_htonl(label << 8);
		mac_set(v->eth.h_dest, rmac);
		mac_set(v->eth.h_source, router_mac);
		v->eth.h_proto = bpf_htons(ETH_P_IP);
	} else {
		o->tag = bpf_htonl(label << 12 | 1 << 8 | 64); // bottom of stack, TTL 64
	}
	count(vx ? C_ENCAP_VXLAN : C_ENCAP);
	count_port(p->id, len, 0);
	struct bpf_redir_neigh n = { .nh_family = AF_INET, .ipv4_nh = nh_addr };
	return bpf_redirect_neigh(oif, &n, sizeof(n), 0);
}

SEC("tc")
int punt_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ingress_ifindex;
	__u32 *veth = bpf_map_lookup_elem(&taps, &ifindex);
	if (!veth)
		return TC_ACT_SHOT;
	count(C_PUNT_TX);
	return bpf_redirect_peer(*veth, 0);
}

SEC("tc")
int underlay_ingress(struct __sk_buff *skb)
{
	__u32 key = 0;
	struct config *c = bpf_map_lookup_elem(&cfg, &key);
	if (!c)
		return TC_ACT_OK;
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct outer *o = data + ETH_HLEN;
	if ((void *)(o + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (o->ip.ihl != 5 || o->ip.protocol != IPPROTO_UDP || (o->ip.frag_off & bpf_htons(0x3fff)) ||
	    o->ip.daddr != c->underlay)
		return TC_ACT_OK;
	// Cheap first filter: a source no next hop names is the slow path's
	// (it counts the stranger); the per-VRF check follows below.
	__be32 rip = o->ip.saddr;
	if (!bpf_map_lookup_elem(&remotes, &rip))
		return TC_ACT_OK;
	int vx;
	__u32 vrf = 0;
	struct nexthop *nh = 0;
	if (o->udp.dest == c->mplsudp_port) {
		vx = 0;
		__u32 tag = bpf_ntohl(o->tag);
		if (!(tag & 0x100))
			return TC_ACT_OK; // more than one label
		__u32 label = tag >> 12;
		__u32 *id = bpf_map_lookup_elem(&labels, &label);
		if (!id)
			return TC_ACT_OK;
		nh = bpf_map_lookup_elem(&nexthops, id);
		if (!nh)
			return TC_ACT_OK;
		if (nh->kind == NH_VRF_LOOKUP) {
			vrf = nh->label;
			nh = 0;
		}
	} else if (o->udp.dest == c->vxlan_port) {
		vx = 1;
		if (bpf_ntohl(o->tag) != 0x08000000)
			return TC_ACT_OK;
	} else {
		return TC_ACT_OK;
	}
	__u32 ovh = vx ? VXLAN_OVERHEAD : MPLS_OVERHEAD;
	struct iphdr *ip = data + ETH_HLEN + ovh;
	if ((void *)(ip + 1) > end)
		return TC_ACT_OK;
	if (vx) {
		struct { __be32 flags, vni; struct ethhdr eth; } *v = (void *)&o->tag;
		if ((void *)(v + 1) > end || v->eth.h_proto != bpf_htons(ETH_P_IP))
			return TC_ACT_OK;
		__u32 vni = bpf_ntohl(v->vni) >> 8;
		__u32 *pv = bpf_map_lookup_elem(&vnis, &vni);
		if (!pv)
			return TC_ACT_OK;
		vrf = *pv;
	}
	if (ip->ihl != 5 || ip->version != 4 || (ip->frag_off & bpf_htons(0x3fff)))
		return TC_ACT_OK;
	// One inner packet per skb: a UDP GRO train for the vRouter's socket
	// (many datagrams, one skb) fails this and stays on the slow path.
	if (bpf_ntohs(ip->tot_len) != skb->len - ETH_HLEN - ovh)
		return TC_ACT_OK;
	__be16 sport = 0, dport = 0;
	if (!l4(ip + 1, end, ip->protocol, &sport, &dport))
		return TC_ACT_OK;
	if (!nh) {
		__u32 id = 0;
		nh = route_id(vrf, ip->daddr, &id);
		if (nh && nh->kind == NH_COMPOSITE)
			nh = select_member(id, flow_hash(ip->saddr, ip->daddr, sport, dport, ip->protocol));
	}
	if (!nh || nh->kind != NH_PORT)
		return TC_ACT_OK;
	__u32 pid = nh->port;
	struct port_info *d = bpf_map_lookup_elem(&ports_by_id, &pid);
	if (!d || !d->veth_ifindex)
		return TC_ACT_OK;
	// Tunnel packets only from a remote endpoint that a route of the VRF
	// the label or VNI was advertised for leads to, over this
	// encapsulation (the engine's acceptSource): a per-VRF label or VNI
	// names its VRF, a port's label the port's. Any other source is the
	// slow path's to drop and count.
	struct tunnel_source ts = { .vrf = vrf ? vrf : d->vrf, .addr = rip,
				    .encap = vx ? ENCAP_VXLAN : ENCAP_MPLSOUDP };
	if (!bpf_map_lookup_elem(&tunnel_sources, &ts))
		return TC_ACT_OK;
	// The source's network as the destination port's VRF sees it: its
	// route's, or a composite's first member's (the engine's rule).
	__u32 sid = 0;
	struct nexthop *snh = route_id(d->vrf, ip->saddr, &sid);
	if (!snh || snh->kind == 0)
		return TC_ACT_OK;
	__u32 src_net = snh->network;
	if (src_net == 0 && snh->kind == NH_COMPOSITE) {
		struct members *m = bpf_map_lookup_elem(&composites, &sid);
		if (!m || m->n == 0)
			return TC_ACT_OK;
		__u32 first = m->ids[0];
		struct nexthop *f = bpf_map_lookup_elem(&nexthops, &first);
		if (!f)
			return TC_ACT_OK;
		src_net = f->network;
	}
	__u32 len = skb->len - ovh;
	if (src_net != d->network && !allowed(d->vrf, ip, sport, dport, src_net, d->network, len))
		return TC_ACT_OK;
	__u8 mac[6], gw[6];
	mac_set(mac, d->mac);
	mac_set(gw, c->gw_mac);
	__u32 veth = d->veth_ifindex, id = d->id;
	if (bpf_skb_adjust_room(skb, -(__s32)ovh, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO)) {
		count(C_ERROR);
		return TC_ACT_OK;
	}
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_SHOT;
	mac_set(eth->h_dest, mac);
	mac_set(eth->h_source, gw);
	eth->h_proto = bpf_htons(ETH_P_IP);
	count(vx ? C_DECAP_VXLAN : C_DECAP);
	count_port(id, len, 1);
	return bpf_redirect_peer(veth, 0);
}
