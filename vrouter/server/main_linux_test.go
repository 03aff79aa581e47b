package server_test

import (
	"fmt"
	"os"
	"testing"
)

// TestMain runs the test binary as a helper process when a test started
// it as one (see clientChild), and the tests otherwise.
func TestMain(m *testing.M) {
	if sock := os.Getenv("WEFT_TEST_CHILD_SOCKET"); sock != "" {
		if err := clientChild(sock); err != nil {
			fmt.Fprintln(os.Stderr, "client child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
