package packet

import (
	"fmt"
	"strings"
)

// ParseError is why a header failed validation. It names the header, the
// field at fault and that field's byte offset from the start of the header,
// so that a drop counter or a log line says exactly what was wrong.
// Formatting is deferred to Error so that a flood of bad packets costs one
// small allocation each and no formatting.
type ParseError struct {
	Layer  string // the header: "ipv4", "tcp", "vxlan", ...
	Field  string // the field at fault: "total length", "header", ...
	Offset int    // byte offset of Field from the start of the header
	Value  int    // the value found, or the bytes available
	Limit  int    // the bound it broke
	format string // how Value and Limit read, with two %d verbs
}

func (e *ParseError) Error() string {
	if !strings.Contains(e.format, "%") {
		return e.Layer + ": " + e.Field + " " + e.format
	}
	return e.Layer + ": " + e.Field + " " + fmt.Sprintf(e.format, e.Value, e.Limit)
}

// Message templates, so every header words the same fault the same way.
const (
	fmtShort    = "needs %[2]d bytes, have %[1]d"
	fmtExceeds  = "%d exceeds %d bytes of packet"
	fmtBelow    = "%d below minimum %d"
	fmtWant     = "%d, want %d"
	fmtTooMany  = "%d exceeds limit %d"
	fmtReserved = "%#x has reserved bits set (mask %#x)"
)

func errShort(layer, field string, off, have, need int) error {
	return &ParseError{Layer: layer, Field: field, Offset: off, Value: have, Limit: need, format: fmtShort}
}

func errField(layer, field string, off, value, limit int, format string) error {
	return &ParseError{Layer: layer, Field: field, Offset: off, Value: value, Limit: limit, format: format}
}

// errMsg is a fault that has no numbers to report.
func errMsg(layer, field string, off int, msg string) error {
	return &ParseError{Layer: layer, Field: field, Offset: off, format: msg}
}

// errBuf is a builder's complaint about a buffer too small for what it must
// write; it is a caller's mistake, so it is formatted eagerly.
func errBuf(layer string, have, need int) error {
	return fmt.Errorf("%s: buffer of %d bytes, need %d", layer, have, need)
}
