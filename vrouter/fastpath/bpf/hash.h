// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The engine's flow hash, ECMP member choice and source-port choice, bit
// for bit (packet.FiveTuple.Hash, nexthop.NextHop.Select,
// tunnel.pickSocket): TestECMPAndSourcePortAsTheEngine compares them.
#pragma once

// mum is wyhash's multiply-and-fold (packet.mum): the high and low
// halves of the 128-bit product, xored, from 32-bit pieces.
static __always_inline __u64 mum(__u64 a, __u64 b)
{
	__u64 a0 = a & 0xffffffff, a1 = a >> 32, b0 = b & 0xffffffff, b1 = b >> 32;
	__u64 p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
	__u64 mid = (p00 >> 32) + (p01 & 0xffffffff) + (p10 & 0xffffffff);
	__u64 lo = (mid << 32) | (p00 & 0xffffffff);
	__u64 hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
	return hi ^ lo;
}

// flow_hash is packet.FiveTuple.Hash of an IPv4 tuple (the addresses as
// IPv4-mapped IPv6, ports in host order): the engine's hash, so that the
// kernel picks the ECMP member and the outer source port the engine picks.
static __always_inline __u64 flow_hash(__be32 src, __be32 dst, __be16 sport, __be16 dport, __u8 proto)
{
	const __u64 k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL;
	const __u64 k2 = 0x8ebc6af09c88c6e3ULL, k3 = 0x589965cc75374cc3ULL;
	__u64 s1 = 0x0000ffff00000000ULL | bpf_ntohl(src);
	__u64 d1 = 0x0000ffff00000000ULL | bpf_ntohl(dst);
	__u64 p = (__u64)bpf_ntohs(sport) << 32 | (__u64)bpf_ntohs(dport) << 16 | proto;
	__u64 h = mum(k0, s1 ^ k1);
	h = mum(h ^ k2, d1 ^ k3);
	return mum(h ^ p ^ k1, k0 ^ (p << 1));
}

// mix64 is nexthop.mix64 (splitmix64's finaliser).
static __always_inline __u64 mix64(__u64 x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

// select_member is nexthop.NextHop.Select: the member of composite id with
// the highest mix64(hash ^ seed), the lower ID on a tie.
static __always_inline struct nexthop *select_member(__u32 id, __u64 hash)
{
	struct members *m = bpf_map_lookup_elem(&composites, &id);
	if (!m)
		return 0;
	__u32 n = m->n;
	if (n == 0 || n > MAX_MEMBERS)
		return 0;
	// best_id and best_score are unknown scalars to the verifier, not
	// the index of the best: the states of each iteration then prune.
	__u32 best_id = m->ids[0];
	__u64 best_score = mix64(hash ^ m->seeds[0]);
	for (int i = 1; i < MAX_MEMBERS; i++) {
		if (i >= n)
			break;
		__u64 sc = mix64(hash ^ m->seeds[i]);
		__u32 mid = m->ids[i];
		if (sc > best_score || (sc == best_score && mid < best_id)) {
			best_score = sc;
			best_id = mid;
		}
	}
	return bpf_map_lookup_elem(&nexthops, &best_id);
}

// pick_sport is tunnel.pickSocket: socket hi64(hash * n) of n.
static __always_inline __u16 pick_sport(struct config *c, int vx, __u64 hash)
{
	__u32 n = c->nsports[vx & 1];
	if (n == 0 || n > MAX_SPORTS)
		return 0;
	__u64 lo = (hash & 0xffffffff) * n, hi = (hash >> 32) * n;
	__u32 i = (hi + (lo >> 32)) >> 32;
	if (i >= MAX_SPORTS)
		return 0;
	return c->sports[vx & 1][i];
}
