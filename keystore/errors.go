package keystore

import (
	"errors"
	"sort"
	"strings"
)

// Sentinel errors. Every error the store returns for a caller mistake wraps
// one of these; anything else is an internal failure.
var (
	// ErrNotFound: the addressed record does not exist.
	ErrNotFound = errors.New("keystore: not found")
	// ErrInvalid: the input failed validation; see *ValidationError.
	ErrInvalid = errors.New("keystore: invalid input")
	// ErrConflict: the write conflicts with the current state (e.g. a member
	// that already exists).
	ErrConflict = errors.New("keystore: conflict")
	// ErrUnavailable: the database cannot take writes right now (read-only,
	// disk full, locked for too long), or cannot be reached at all
	// (PostgreSQL down, restarting, or out of connections).
	ErrUnavailable = errors.New("keystore: storage unavailable")
	// ErrForbidden: the actor may not make this change (e.g. a group
	// owner's bastion target outside what admins allowed); see
	// *ForbiddenError.
	ErrForbidden = errors.New("keystore: forbidden")
)

// ForbiddenError carries the reason shown to the client.
type ForbiddenError struct{ Msg string }

func (e *ForbiddenError) Error() string        { return "keystore: forbidden: " + e.Msg }
func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }

func forbidden(msg string) error { return &ForbiddenError{Msg: msg} }

// NotFoundError names what was not found ("Key", "User", "Group", ...).
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string { return "keystore: " + strings.ToLower(e.What) + " not found" }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func notFound(what string) error { return &NotFoundError{What: what} }

// ConflictError carries a human-readable reason.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string        { return "keystore: " + e.Msg }
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// ValidationError maps field names to the reasons they were refused, in
// GitLab's shape: {"fingerprint_sha256": ["has already been taken"]}.
type ValidationError struct {
	Fields map[string][]string
}

func (e *ValidationError) Error() string {
	names := make([]string, 0, len(e.Fields))
	for f := range e.Fields {
		names = append(names, f)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("keystore: invalid")
	for _, f := range names {
		b.WriteString(" " + f + ": " + strings.Join(e.Fields[f], ", ") + ";")
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// invalid builds a single-field validation error.
func invalid(field, reason string) *ValidationError {
	return &ValidationError{Fields: map[string][]string{field: {reason}}}
}

// problems accumulates field errors during validation.
type problems map[string][]string

func (p problems) add(field, reason string) { p[field] = append(p[field], reason) }

// with adds a validation error's fields to p and returns p.err(); any other
// error is returned as it is.
func (p problems) with(err error) error {
	var ve *ValidationError
	if err != nil && !errors.As(err, &ve) {
		return err
	}
	if ve != nil {
		for f, rs := range ve.Fields {
			for _, r := range rs {
				p.add(f, r)
			}
		}
	}
	return p.err()
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Fields: p}
}
