package fib

import (
	"encoding/binary"
	"math/bits"
	"slices"
)

// The trie has a stride of 8 bits: the node at depth d branches on octet
// d of the address. A node stores the routes whose last significant bit
// falls in its octet, in the complete-binary-tree numbering of ART
// (Knuth's Allotment Routing Table): a route of relative length l (0..8)
// whose top l bits of the octet are v has index 1<<l | v, so the indices
// 1..511 are the 511 prefixes of an octet and index i's parent (one bit
// shorter) is i>>1. A route of length L > 0 belongs at depth (L-1)/8 with
// relative length L-8*depth in 1..8; the default route is index 1 of the
// root. IPv4 needs depths 0..3, IPv6 0..15.
//
// Path compression: a route that would be alone below a child slot is kept
// in its parent as a leaf (the whole prefix, compared at once) instead of a
// chain of nodes with one route at the end. A second route arriving under
// that slot pushes the leaf down into a new node; a delete that leaves a
// node holding one route turns it back into a leaf. With random prefixes
// this keeps the depth at about log256 of the table size.
//
// Finding the longest route in a node for octet o is testing the nine
// ancestors of index 256+o, longest first; they sit in four known words of
// the bitmap, so it is four masked tests.
//
// Routes, children and leaves are kept in dense slices ordered by index,
// found by rank (popcount of the bitmap below the index), so a node holds
// only what it uses. The rank arrays cache the popcount of the words below
// each word.
type node struct {
	pfx     [8]uint64 // bit i set: a route with ART index i
	kids    [4]uint64 // bit o set: a child node for octet o
	lvs     [4]uint64 // bit o set: a leaf for octet o (never with a child)
	pfxRank [8]uint16
	kidRank [4]uint16
	lvsRank [4]uint16
	nhs     []NextHopID
	child   []*node
	leaves  []leaf
	gen     uint64 // the writer generation that may still edit this node
}

// leaf is a whole route: its address as two big-endian words (an IPv4
// address in the top 32 bits of hi), its length and next hop.
type leaf struct {
	hi, lo uint64
	nh     NextHopID
	bits   uint8
}

// masks returns the network masks of a prefix length as two words.
func masks(length int) (mhi, mlo uint64) {
	mhi = ^uint64(0) << (64 - min(length, 64))
	if length > 64 {
		mlo = ^uint64(0) << (128 - length)
	}
	return mhi, mlo
}

func (l *leaf) contains(hi, lo uint64) bool {
	mhi, mlo := masks(int(l.bits))
	return hi&mhi == l.hi && lo&mlo == l.lo
}

// key is an address or prefix being looked up, inserted or deleted.
type key struct {
	a      [16]byte // the first n bytes are the address
	n      int      // 4 or 16
	hi, lo uint64
	bits   int // prefix length
	depth  int // depth of the node it belongs in
	idx    int // its ART index there
}

func newKey(a []byte, length int) key {
	var k key
	k.n = copy(k.a[:], a)
	if k.n == 4 {
		k.hi = uint64(binary.BigEndian.Uint32(a)) << 32
	} else {
		k.hi, k.lo = binary.BigEndian.Uint64(a[0:8]), binary.BigEndian.Uint64(a[8:16])
	}
	k.bits = length
	k.depth, k.idx = position(a, length)
	return k
}

// keyOfLeaf rebuilds the key of a leaf in a trie of n-byte addresses.
func keyOfLeaf(l *leaf, n int) key {
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], l.hi)
	binary.BigEndian.PutUint64(b[8:16], l.lo)
	return newKey(b[:n], int(l.bits))
}

func (k *key) leaf(nh NextHopID) leaf {
	return leaf{hi: k.hi, lo: k.lo, nh: nh, bits: uint8(k.bits)}
}

func (k *key) is(l *leaf) bool { return l.hi == k.hi && l.lo == k.lo && int(l.bits) == k.bits }

// position maps a prefix length to the depth of the node that stores it and
// its ART index there, given the address bytes.
func position(a []byte, length int) (depth, index int) {
	if length == 0 {
		return 0, 1
	}
	depth = (length - 1) / 8
	rel := length - 8*depth
	return depth, 1<<rel | int(a[depth])>>(8-rel)
}

// anc0[o>>3] masks the ancestors of 256+o that fall in word 0: indices
// 32+o>>3, 16+o>>4, 8+o>>5, 4+o>>6, 2+o>>7 and 1.
var anc0 = func() (t [32]uint64) {
	for k := range t {
		for i := 32 + k; i > 0; i >>= 1 {
			t[k] |= 1 << i
		}
	}
	return t
}()

// lpm returns the ART index of the longest route in n matching octet o,
// or 0.
func (n *node) lpm(o byte) int {
	if n.pfx[4+o>>6]&(1<<(o&63)) != 0 {
		return 256 + int(o)
	}
	if n.pfx[2+o>>7]&(1<<((o>>1)&63)) != 0 {
		return 128 + int(o>>1)
	}
	if n.pfx[1]&(1<<(o>>2)) != 0 {
		return 64 + int(o>>2)
	}
	if x := n.pfx[0] & anc0[o>>3]; x != 0 {
		return 63 - bits.LeadingZeros64(x)
	}
	return 0
}

func (n *node) hasPfx(i int) bool { return n.pfx[i>>6]&(1<<(i&63)) != 0 }

func (n *node) pfxIndex(i int) int {
	w := i >> 6
	return int(n.pfxRank[w]) + bits.OnesCount64(n.pfx[w]&(1<<(i&63)-1))
}

func (n *node) hasKid(o byte) bool { return n.kids[o>>6]&(1<<(o&63)) != 0 }

func (n *node) kidIndex(o byte) int {
	w := o >> 6
	return int(n.kidRank[w]) + bits.OnesCount64(n.kids[w]&(1<<(o&63)-1))
}

// kid returns the child node for octet o, or nil.
func (n *node) kid(o byte) *node {
	if !n.hasKid(o) {
		return nil
	}
	return n.child[n.kidIndex(o)]
}

func (n *node) hasLeaf(o byte) bool { return n.lvs[o>>6]&(1<<(o&63)) != 0 }

func (n *node) leafIndex(o byte) int {
	w := o >> 6
	return int(n.lvsRank[w]) + bits.OnesCount64(n.lvs[w]&(1<<(o&63)-1))
}

// leaf returns the leaf for octet o, or nil.
func (n *node) leaf(o byte) *leaf {
	if !n.hasLeaf(o) {
		return nil
	}
	return &n.leaves[n.leafIndex(o)]
}

func (n *node) empty() bool { return len(n.nhs) == 0 && len(n.child) == 0 && len(n.leaves) == 0 }

func (n *node) rerank() {
	var r uint16
	for w, x := range n.pfx {
		n.pfxRank[w] = r
		r += uint16(bits.OnesCount64(x))
	}
	var rk, rl uint16
	for w := range n.kids {
		n.kidRank[w], n.lvsRank[w] = rk, rl
		rk += uint16(bits.OnesCount64(n.kids[w]))
		rl += uint16(bits.OnesCount64(n.lvs[w]))
	}
}

// The mutators below are only called on nodes the writer owns (gen equal
// to its transaction's), never on a published node.

// setPfx stores nh at index i and reports whether the route is new.
func (n *node) setPfx(i int, nh NextHopID) bool {
	k := n.pfxIndex(i)
	if n.hasPfx(i) {
		n.nhs[k] = nh
		return false
	}
	n.pfx[i>>6] |= 1 << (i & 63)
	n.nhs = slices.Insert(n.nhs, k, nh)
	n.rerank()
	return true
}

func (n *node) clearPfx(i int) {
	k := n.pfxIndex(i)
	n.nhs = slices.Delete(n.nhs, k, k+1)
	n.pfx[i>>6] &^= 1 << (i & 63)
	n.rerank()
}

func (n *node) setKid(o byte, c *node) {
	k := n.kidIndex(o)
	if n.hasKid(o) {
		n.child[k] = c
		return
	}
	n.kids[o>>6] |= 1 << (o & 63)
	n.child = slices.Insert(n.child, k, c)
	n.rerank()
}

func (n *node) clearKid(o byte) {
	k := n.kidIndex(o)
	n.child = slices.Delete(n.child, k, k+1)
	n.kids[o>>6] &^= 1 << (o & 63)
	n.rerank()
}

func (n *node) setLeaf(o byte, l leaf) {
	k := n.leafIndex(o)
	if n.hasLeaf(o) {
		n.leaves[k] = l
		return
	}
	n.lvs[o>>6] |= 1 << (o & 63)
	n.leaves = slices.Insert(n.leaves, k, l)
	n.rerank()
}

func (n *node) clearLeaf(o byte) {
	k := n.leafIndex(o)
	n.leaves = slices.Delete(n.leaves, k, k+1)
	n.lvs[o>>6] &^= 1 << (o & 63)
	n.rerank()
}

// clone copies n for generation gen. The slices are copied, never shared,
// because an owned node edits them in place.
func (n *node) clone(gen uint64) *node {
	c := *n
	c.nhs = slices.Clone(n.nhs)
	c.child = slices.Clone(n.child)
	c.leaves = slices.Clone(n.leaves)
	c.gen = gen
	return &c
}

// sole returns n's only route as a leaf, if n holds exactly one route and
// no children. path is the address of any route under n, whose first depth
// bytes are n's position in the trie.
func (n *node) sole(path *key, depth int) (leaf, bool) {
	if len(n.child) != 0 || len(n.nhs)+len(n.leaves) != 1 {
		return leaf{}, false
	}
	if len(n.leaves) == 1 {
		return n.leaves[0], true
	}
	i := 0
	for w, x := range n.pfx {
		if x != 0 {
			i = w*64 + bits.TrailingZeros64(x)
			break
		}
	}
	var b [16]byte
	copy(b[:depth], path.a[:depth])
	rel := bits.Len(uint(i)) - 1
	b[depth] = byte((i - 1<<rel) << (8 - rel))
	k := newKey(b[:path.n], 8*depth+rel)
	return k.leaf(n.nhs[0]), true
}

// lookup is the longest-prefix match of a (4 or 16 bytes, also as the
// words hi and lo) in the trie at root: descend as far as children exist;
// a leaf at the end matches longer than anything above it; otherwise take
// the longest route on the way back up.
func lookup(root *node, a []byte, hi, lo uint64) (NextHopID, bool) {
	if root == nil {
		return 0, false
	}
	var path [16]*node
	n, d := root, 0
	for {
		path[d] = n
		o := a[d]
		if n.hasKid(o) && d+1 < len(a) {
			n = n.child[n.kidIndex(o)]
			d++
			continue
		}
		if n.hasLeaf(o) {
			if l := &n.leaves[n.leafIndex(o)]; l.contains(hi, lo) {
				return l.nh, true
			}
		}
		break
	}
	for ; d >= 0; d-- {
		n := path[d]
		if i := n.lpm(a[d]); i != 0 {
			return n.nhs[n.pfxIndex(i)], true
		}
	}
	return 0, false
}

// exact returns the route stored for exactly k.
func exact(n *node, k *key) (NextHopID, bool) {
	for d := 0; n != nil; d++ {
		if d == k.depth {
			if !n.hasPfx(k.idx) {
				return 0, false
			}
			return n.nhs[n.pfxIndex(k.idx)], true
		}
		o := k.a[d]
		if l := n.leaf(o); l != nil {
			return l.nh, k.is(l)
		}
		n = n.kid(o)
	}
	return 0, false
}

// walk calls yield for every route under n, whose path from the root is
// a[:depth], in trie order; it stops when yield returns false.
func walk(n *node, a []byte, depth int, yield func(a []byte, length int, nh NextHopID) bool) bool {
	if n == nil {
		return true
	}
	k := 0
	for w, x := range n.pfx {
		for x != 0 {
			i := w*64 + bits.TrailingZeros64(x)
			x &= x - 1
			rel := bits.Len(uint(i)) - 1
			a[depth] = byte((i - 1<<rel) << (8 - rel))
			clear(a[depth+1:])
			if !yield(a, 8*depth+rel, n.nhs[k]) {
				return false
			}
			k++
		}
	}
	for i := range n.leaves {
		l := &n.leaves[i]
		var b [16]byte
		binary.BigEndian.PutUint64(b[0:8], l.hi)
		binary.BigEndian.PutUint64(b[8:16], l.lo)
		copy(a, b[:])
		if !yield(a, int(l.bits), l.nh) {
			return false
		}
	}
	k = 0
	for w, x := range n.kids {
		for x != 0 {
			o := w*64 + bits.TrailingZeros64(x)
			x &= x - 1
			a[depth] = byte(o)
			if !walk(n.child[k], a, depth+1, yield) {
				return false
			}
			k++
		}
	}
	return true
}
