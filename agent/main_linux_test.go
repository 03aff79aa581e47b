//go:debug multipathtcp=0

package agent_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// TestMain runs the test binary as a helper process when a test started
// it as one (see injectRoutes), and the tests otherwise.
func TestMain(m *testing.M) {
	if n, _ := strconv.Atoi(os.Getenv("WEFT_INJECT_ROUTES")); n > 0 {
		if err := injectRoutes(n); err != nil {
			fmt.Fprintln(os.Stderr, "route injector:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
