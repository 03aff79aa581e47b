package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/weftnet/weft/internal/strictyaml"
)

// FieldError is one error in a weft.yaml document, at a path such as
// "bgp.controllers[1].asn" and its line (0 when unknown). Parse returns all
// of them joined with errors.Join; errors.As finds each.
type FieldError = strictyaml.FieldError

// docName names weft.yaml in an error about the document as a whole.
const docName = "weft.yaml"

// maxDocument bounds the size of a weft.yaml document.
const maxDocument = 4 << 20

// Parse decodes and validates one weft.yaml document strictly: an unknown
// key, a value of the wrong type or out of range, a dangling reference is
// an error naming its path and line. All errors are returned, joined.
func Parse(data []byte) (*Config, error) {
	if len(data) > maxDocument {
		return nil, &FieldError{Doc: docName, Err: fmt.Errorf("document is %d bytes, more than the %d allowed", len(data), maxDocument)}
	}
	root, err := strictyaml.ParseDocument(data)
	if err != nil {
		fe := err.(*FieldError)
		if errors.Is(err, strictyaml.ErrSecondDocument) {
			fe = &FieldError{Line: fe.Line, Err: errors.New("more than one YAML document; weft.yaml is one document")}
		}
		fe.Doc = docName
		return nil, fe
	}
	c := &Config{}
	res := strictyaml.Decode(root, c)
	errs := res.Errs
	if !res.TooLarge {
		// Validate even a document with decoding errors, so that one run
		// shows every error; but a value that failed to decode is not
		// also reported as missing.
		v := validator{lines: res.Lines}
		v.config(c)
		for _, err := range v.errs {
			if !underFailed(err.(*FieldError).Path, res.Errs) {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b error) int {
			return lineOf(a) - lineOf(b)
		})
		for _, err := range errs {
			err.(*FieldError).Doc = docName
		}
		return nil, errors.Join(errs...)
	}
	c.raw = bytes.Clone(data)
	return c, nil
}

// underFailed says whether path is, or is inside, a path whose value failed
// to decode.
func underFailed(path string, decodeErrs []error) bool {
	for _, err := range decodeErrs {
		p := err.(*FieldError).Path
		if path == p || (strings.HasPrefix(path, p) && (path[len(p)] == '.' || path[len(p)] == '[')) {
			return true
		}
	}
	return false
}

// lineOf orders errors by line; errors without one go last.
func lineOf(err error) int {
	if l := err.(*FieldError).Line; l > 0 {
		return l
	}
	return math.MaxInt32
}
