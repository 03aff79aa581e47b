package underlay

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/weftnet/weft/internal/atomicfile"
)

// DefaultResolvConf is where the DNS configuration goes.
const DefaultResolvConf = "/etc/resolv.conf"

// resolvConf renders a resolv.conf from name servers and search domains,
// in the order given, duplicates dropped. The libc resolver reads at most
// 3 name servers and 6 search domains; the rest are kept as comments so
// an operator sees them.
func resolvConf(servers []netip.Addr, search []string) []byte {
	var b bytes.Buffer
	b.WriteString("# written by weft init (underlay); changes are overwritten\n")
	var doms []string
	for _, d := range search {
		d = strings.TrimSuffix(strings.TrimSpace(d), ".")
		if d == "" || strings.ContainsAny(d, " \t\n#;") || slices.Contains(doms, d) {
			continue
		}
		doms = append(doms, d)
	}
	if len(doms) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(doms[:min(len(doms), 6)], " "))
		if len(doms) > 6 {
			fmt.Fprintf(&b, "# not used (more than 6): %s\n", strings.Join(doms[6:], " "))
		}
	}
	var seen []netip.Addr
	for _, s := range servers {
		if !s.IsValid() || slices.Contains(seen, s) {
			continue
		}
		seen = append(seen, s)
		if len(seen) > 3 {
			fmt.Fprintf(&b, "# nameserver %s (not used: more than 3)\n", s)
			continue
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	return b.Bytes()
}

// writeIfChanged replaces path with data atomically, only when the
// content differs (a re-apply does not touch the file).
func writeIfChanged(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return false, err
	}
	return true, nil
}
