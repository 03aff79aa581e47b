package kmod

import "strings"

// globMatch reports whether s matches pattern with the semantics kmod gets
// from fnmatch(3) without flags: '*' matches any run of bytes (including
// '/'), '?' any one byte, "[...]" a byte class with ranges and '!' or '^'
// negation, '\' escapes the next byte. A '[' without a closing ']' is a
// literal. Matching is byte-wise (modaliases are ASCII) and linear-ish: one
// backtracking point, as in the classic wildcard algorithm, so a hostile
// pattern cannot make it exponential.
func globMatch(pattern, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, -1
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starP, starS = px, sx
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			case '[':
				if sx < len(s) {
					matched, width, ok := matchClass(pattern[px:], s[sx])
					if !ok {
						// Unterminated class: '[' stands for itself.
						matched, width = s[sx] == '[', 1
					}
					if matched {
						px += width
						sx++
						continue
					}
				}
			case '\\':
				lit, width := byte('\\'), 1
				if px+1 < len(pattern) {
					lit, width = pattern[px+1], 2
				}
				if sx < len(s) && s[sx] == lit {
					px += width
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		// Mismatch: let the last '*' swallow one more byte, if it can.
		if starP >= 0 && starS < len(s) {
			starS++
			px, sx = starP+1, starS
			continue
		}
		return false
	}
	return true
}

// matchClass matches b against the class at the start of p (p[0] == '[').
// It returns whether b is in the class, the width of the class in p, and
// false for ok when the class is not terminated.
func matchClass(p string, b byte) (matched bool, width int, ok bool) {
	i := 1
	negate := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		negate = true
		i++
	}
	first := true
	for {
		if i >= len(p) {
			return false, 0, false
		}
		c := p[i]
		if c == ']' && !first {
			return matched != negate, i + 1, true
		}
		first = false
		if c == '\\' && i+1 < len(p) {
			i++
			c = p[i]
		}
		i++
		lo, hi := c, c
		// A range "a-z"; a '-' before the closing ']' is a literal.
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi = p[i+1]
			i += 2
			if hi == '\\' && i < len(p) {
				hi = p[i]
				i++
			}
		}
		if lo <= b && b <= hi {
			matched = true
		}
	}
}

// normalizeAlias applies kmod's alias normalisation: '-' becomes '_'
// outside bracket expressions, so "fs-vfat" and "fs_vfat" are one alias
// while a class like "[a-z]" keeps its range.
func normalizeAlias(s string) string {
	if !strings.Contains(s, "-") {
		return s
	}
	b := []byte(s)
	inClass := false
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '[' && !inClass:
			inClass = true
			// ']' (possibly after a negation) right after '[' is a member.
			j := i + 1
			if j < len(b) && (b[j] == '!' || b[j] == '^') {
				j++
			}
			if j < len(b) && b[j] == ']' {
				i = j
			}
		case b[i] == ']' && inClass:
			inClass = false
		case b[i] == '-' && !inClass:
			b[i] = '_'
		}
	}
	return string(b)
}

// literalPrefix is the part of pattern before its first metacharacter; a
// subject that does not start with it cannot match, which lets Match skip
// most of a few thousand PCI ID patterns with one comparison.
func literalPrefix(pattern string) string {
	if i := strings.IndexAny(pattern, "*?[\\"); i >= 0 {
		return pattern[:i]
	}
	return pattern
}
