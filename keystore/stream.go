package keystore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Audit event streaming: the persistent outbox and its consumers.
//
// While anything consumes it (a streaming destination an admin added, or a
// node's local sink), every audit event writes an outbox row in the same
// transaction as the event, so an event that committed is in the outbox and
// one that rolled back is not. Outbox ids follow commit order (SQLite: one
// writer; PostgreSQL: the rows are numbered under a transaction-scoped
// advisory lock held to commit), so a consumer that delivered everything up
// to id N never later finds a committed row below N. Each consumer keeps
// the last id it delivered (delivered_seq); rows every consumer has passed
// are deleted (TrimOutbox). Delivery itself (HTTP, files) is package
// auditstream's.

// outboxLockKey orders outbox rows on PostgreSQL ("kgaudit").
const outboxLockKey int64 = 0x6b6761756469740

// StreamDestination is an HTTPS endpoint that receives every audit event
// (of EventTypes, when not empty) at least once, in order.
type StreamDestination struct {
	ID                int64
	Name              string
	DestinationURL    string
	VerificationToken string
	EventTypes        []string
	DeliveredSeq      int64
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// Wants reports whether the destination streams events of action.
func (d *StreamDestination) Wants(action string) bool {
	return len(d.EventTypes) == 0 || slices.Contains(d.EventTypes, action)
}

// StreamDestinationInput creates or changes a destination; nil fields are
// left as they are on update.
type StreamDestinationInput struct {
	Name              *string
	DestinationURL    *string
	VerificationToken *string
	EventTypes        *[]string
}

const streamCols = `id, name, destination_url, verification_token, event_type_filters, delivered_seq, created_at, updated_at`

func scanStreamDestination(row rowScanner) (*StreamDestination, error) {
	var d StreamDestination
	var filters string
	var created, updated int64
	if err := row.Scan(&d.ID, &d.Name, &d.DestinationURL, &d.VerificationToken, &filters, &d.DeliveredSeq, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(filters), &d.EventTypes); err != nil {
		return nil, err
	}
	if d.EventTypes == nil {
		d.EventTypes = []string{}
	}
	d.CreatedAt, d.UpdatedAt = fromMS(created), fromMS(updated)
	return &d, nil
}

// ValidateDestinationURL checks a streaming destination: https:// to any
// host, or http:// to a loopback host (receivers often run beside keygate);
// no user info, no fragment.
func ValidateDestinationURL(raw string) error {
	const field = "destination_url"
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case raw == "":
		return invalid(field, "can't be blank")
	case len(raw) > 2048:
		return invalid(field, "is too long (maximum is 2048 characters)")
	case err != nil || u.Host == "" || u.Opaque != "":
		return invalid(field, "is not a valid URL")
	case u.User != nil:
		return invalid(field, "must not hold a user name or password; use verification_token")
	case u.Fragment != "":
		return invalid(field, "must not have a fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if loopbackHost(u.Hostname()) {
			return nil
		}
		return invalid(field, "must use https (plain http only to a loopback address)")
	}
	return invalid(field, "must use https (plain http only to a loopback address)")
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

func validateEventTypes(p problems, types []string) {
	for _, t := range types {
		if t == "" || len(t) > 100 || strings.ContainsAny(t, " \t\r\n") {
			p.add("event_type_filters", "must be a list of event type names (such as key_created)")
			return
		}
	}
}

// newVerificationToken is GitLab's: 24 random characters.
func newVerificationToken() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// CreateStreamDestination adds a destination. It receives the events
// recorded from now on (not the history).
func (s *Store) CreateStreamDestination(ctx context.Context, a Actor, in StreamDestinationInput) (*StreamDestination, error) {
	p := problems{}
	d := &StreamDestination{EventTypes: []string{}}
	if in.DestinationURL == nil {
		p.add("destination_url", "is missing")
	} else if err := p.with(ValidateDestinationURL(*in.DestinationURL)); err != nil && !errors.Is(err, ErrInvalid) {
		return nil, err
	} else {
		d.DestinationURL = strings.TrimSpace(*in.DestinationURL)
	}
	d.VerificationToken = newVerificationToken()
	if in.VerificationToken != nil {
		d.VerificationToken = strings.TrimSpace(*in.VerificationToken)
		validateToken(p, d.VerificationToken)
	}
	if in.EventTypes != nil {
		d.EventTypes = *in.EventTypes
		validateEventTypes(p, d.EventTypes)
	}
	if in.Name != nil && strings.TrimSpace(*in.Name) != "" {
		d.Name = strings.TrimSpace(*in.Name)
		validateText(p, "name", d.Name, true)
	} else if u, err := url.Parse(d.DestinationURL); err == nil {
		d.Name = u.Host
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	err := s.writeTx(ctx, a, false, func(t *tx) error {
		var one int
		err := t.queryRow(ctx, `SELECT 1 FROM audit_stream_destinations WHERE destination_url = ?`, d.DestinationURL).Scan(&one)
		if err == nil {
			return invalid("destination_url", "has already been taken")
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var last sql.NullInt64
		if err := t.queryRow(ctx, `SELECT MAX(id) FROM audit_outbox`).Scan(&last); err != nil {
			return err
		}
		filters, _ := json.Marshal(d.EventTypes)
		d.DeliveredSeq, d.CreatedAt, d.UpdatedAt = last.Int64, t.now, t.now
		d.ID, err = t.insert(ctx, `INSERT INTO audit_stream_destinations (name, destination_url, verification_token, event_type_filters, delivered_seq, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, d.Name, d.DestinationURL, d.VerificationToken, string(filters), d.DeliveredSeq, ms(t.now), ms(t.now))
		if err != nil {
			return err
		}
		// The token is a secret: never in an audit event.
		return t.audit(ctx, "audit_stream_destination_created", "audit_stream_destination", d.ID, map[string]any{
			"destination_url": d.DestinationURL, "name": d.Name, "event_type_filters": d.EventTypes})
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

func validateToken(p problems, tok string) {
	if len(tok) < 16 || len(tok) > 256 || strings.ContainsAny(tok, " \t\r\n") {
		p.add("verification_token", "must be 16 to 256 characters without whitespace")
	}
}

// UpdateStreamDestination changes a destination; its place in the outbox
// stays.
func (s *Store) UpdateStreamDestination(ctx context.Context, a Actor, id int64, in StreamDestinationInput) (*StreamDestination, error) {
	var out *StreamDestination
	err := s.writeTx(ctx, a, false, func(t *tx) error {
		d, err := scanStreamDestination(t.queryRow(ctx, `SELECT `+streamCols+` FROM audit_stream_destinations WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("Streaming destination")
		} else if err != nil {
			return err
		}
		p := problems{}
		changed := map[string]any{}
		if in.DestinationURL != nil {
			if err := p.with(ValidateDestinationURL(*in.DestinationURL)); err != nil && !errors.Is(err, ErrInvalid) {
				return err
			}
			d.DestinationURL = strings.TrimSpace(*in.DestinationURL)
			changed["destination_url"] = d.DestinationURL
		}
		if in.VerificationToken != nil {
			d.VerificationToken = strings.TrimSpace(*in.VerificationToken)
			validateToken(p, d.VerificationToken)
			changed["verification_token"] = "(changed)"
		}
		if in.EventTypes != nil {
			d.EventTypes = *in.EventTypes
			validateEventTypes(p, d.EventTypes)
			changed["event_type_filters"] = d.EventTypes
		}
		if in.Name != nil {
			d.Name = strings.TrimSpace(*in.Name)
			validateText(p, "name", d.Name, true)
			changed["name"] = d.Name
		}
		if err := p.err(); err != nil {
			return err
		}
		var one int
		err = t.queryRow(ctx, `SELECT 1 FROM audit_stream_destinations WHERE destination_url = ? AND id <> ?`, d.DestinationURL, id).Scan(&one)
		if err == nil {
			return invalid("destination_url", "has already been taken")
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		filters, _ := json.Marshal(d.EventTypes)
		d.UpdatedAt = t.now
		if _, err := t.exec(ctx, `UPDATE audit_stream_destinations SET name = ?, destination_url = ?, verification_token = ?, event_type_filters = ?, updated_at = ?
			WHERE id = ?`, d.Name, d.DestinationURL, d.VerificationToken, string(filters), ms(t.now), id); err != nil {
			return err
		}
		out = d
		return t.audit(ctx, "audit_stream_destination_updated", "audit_stream_destination", id, map[string]any{"changes": changed})
	})
	return out, err
}

// DeleteStreamDestination removes a destination (what it had not received
// is not sent).
func (s *Store) DeleteStreamDestination(ctx context.Context, a Actor, id int64) error {
	return s.writeTx(ctx, a, false, func(t *tx) error {
		d, err := scanStreamDestination(t.queryRow(ctx, `SELECT `+streamCols+` FROM audit_stream_destinations WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("Streaming destination")
		} else if err != nil {
			return err
		}
		if _, err := t.exec(ctx, `DELETE FROM audit_stream_destinations WHERE id = ?`, id); err != nil {
			return err
		}
		return t.audit(ctx, "audit_stream_destination_deleted", "audit_stream_destination", id, map[string]any{
			"destination_url": d.DestinationURL, "name": d.Name})
	})
}

// StreamDestination returns one destination.
func (s *Store) StreamDestination(ctx context.Context, id int64) (*StreamDestination, error) {
	d, err := scanStreamDestination(s.queryRow(ctx, `SELECT `+streamCols+` FROM audit_stream_destinations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Streaming destination")
	}
	return d, err
}

// ListStreamDestinations lists destinations by id.
func (s *Store) ListStreamDestinations(ctx context.Context, pg Page) ([]*StreamDestination, int, error) {
	return listPage(ctx, s, streamCols, `audit_stream_destinations`, nil, "id", pg, scanStreamDestination)
}

// OutboxEvent is an audit event waiting in the outbox.
type OutboxEvent struct {
	Seq   int64
	Event AuditEvent
}

// OutboxAfter returns up to limit outbox events with id above after, in
// order.
func (s *Store) OutboxAfter(ctx context.Context, after int64, limit int) ([]OutboxEvent, error) {
	rows, err := s.query(ctx, `SELECT o.id, e.id, e.at, e.actor_id, e.action, e.target_type, e.target_id, e.details, e.remote_ip
		FROM audit_outbox o JOIN audit_events e ON e.id = o.event_id WHERE o.id > ? ORDER BY o.id LIMIT ?`, after, limit)
	return scanRows(rows, err, func(row rowScanner) (OutboxEvent, error) {
		var o OutboxEvent
		var at int64
		var actor sql.NullInt64
		err := row.Scan(&o.Seq, &o.Event.ID, &at, &actor, &o.Event.Action, &o.Event.TargetType, &o.Event.TargetID, &o.Event.Details, &o.Event.RemoteIP)
		o.Event.At = fromMS(at)
		if actor.Valid {
			o.Event.ActorID = &actor.Int64
		}
		return o, err
	})
}

// OutboxPending counts the outbox rows above after.
func (s *Store) OutboxPending(ctx context.Context, after int64) (int, error) {
	return s.count(ctx, `SELECT COUNT(*) FROM audit_outbox WHERE id > ?`, after)
}

// AdvanceStream records that destination id delivered everything up to seq
// (never moving back). A deleted destination is not found.
func (s *Store) AdvanceStream(ctx context.Context, id, seq int64) error {
	return s.writeTx(ctx, Actor{}, false, func(t *tx) error {
		return t.execOne(ctx, "Streaming destination", `UPDATE audit_stream_destinations
			SET delivered_seq = CASE WHEN delivered_seq < ? THEN ? ELSE delivered_seq END WHERE id = ?`, seq, seq, id)
	})
}

// RegisterSink makes name (a node's local sink) a consumer of the outbox
// and returns what it delivered already. A new sink starts at the events
// recorded from now on.
func (s *Store) RegisterSink(ctx context.Context, name string) (int64, error) {
	var seq int64
	err := s.writeTx(ctx, Actor{}, false, func(t *tx) error {
		err := t.queryRow(ctx, `SELECT delivered_seq FROM audit_stream_sinks WHERE name = ?`, name).Scan(&seq)
		if err == nil {
			_, err = t.exec(ctx, `UPDATE audit_stream_sinks SET seen_at = ? WHERE name = ?`, ms(t.now), name)
			return err
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var last sql.NullInt64
		if err := t.queryRow(ctx, `SELECT MAX(id) FROM audit_outbox`).Scan(&last); err != nil {
			return err
		}
		seq = last.Int64
		_, err = t.exec(ctx, `INSERT INTO audit_stream_sinks (name, delivered_seq, seen_at) VALUES (?, ?, ?)`, name, seq, ms(t.now))
		return err
	})
	return seq, err
}

// AdvanceSink records that sink name delivered everything up to seq.
func (s *Store) AdvanceSink(ctx context.Context, name string, seq int64) error {
	return s.writeTx(ctx, Actor{}, false, func(t *tx) error {
		_, err := t.exec(ctx, `UPDATE audit_stream_sinks SET delivered_seq = ?, seen_at = ? WHERE name = ? AND delivered_seq <= ?`,
			seq, ms(t.now), name, seq)
		return err
	})
}

// TrimOutbox deletes the outbox rows every consumer delivered, and forgets
// local sinks not seen for staleAfter (a node that went away must not keep
// the outbox forever). It returns how many rows it deleted.
func (s *Store) TrimOutbox(ctx context.Context, staleAfter time.Duration) (int64, error) {
	var n int64
	err := s.writeTx(ctx, Actor{}, false, func(t *tx) error {
		if _, err := t.exec(ctx, `DELETE FROM audit_stream_sinks WHERE seen_at < ?`, ms(t.now.Add(-staleAfter))); err != nil {
			return err
		}
		var low sql.NullInt64
		err := t.queryRow(ctx, `SELECT MIN(d) FROM (SELECT delivered_seq AS d FROM audit_stream_destinations
			UNION ALL SELECT delivered_seq FROM audit_stream_sinks) c`).Scan(&low)
		if err != nil {
			return err
		}
		var res sql.Result
		if low.Valid {
			res, err = t.exec(ctx, `DELETE FROM audit_outbox WHERE id <= ?`, low.Int64)
		} else {
			res, err = t.exec(ctx, `DELETE FROM audit_outbox`)
		}
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

// outbox writes event id's outbox row when anything consumes the outbox.
func (t *tx) outbox(ctx context.Context, eventID int64) error {
	var one int
	err := t.queryRow(ctx, `SELECT 1 WHERE EXISTS (SELECT 1 FROM audit_stream_destinations) OR EXISTS (SELECT 1 FROM audit_stream_sinks)`).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	} else if err != nil {
		return err
	}
	if !t.s.dialect.serialisesWrites() {
		if _, err := t.exec(ctx, `SELECT pg_advisory_xact_lock(?)`, outboxLockKey); err != nil {
			return err
		}
	}
	_, err = t.exec(ctx, `INSERT INTO audit_outbox (event_id, at) VALUES (?, ?)`, eventID, ms(t.now))
	return err
}

// StreamLeader is this node's claim to deliver to streaming destinations:
// on PostgreSQL a session advisory lock held on its own connection (one
// node at a time; a node that dies releases it with its connection), on
// SQLite always this process.
type StreamLeader struct {
	conn *sql.Conn
}

// streamLeaderKey is the advisory lock of the streaming leader ("kgstream").
const streamLeaderKey int64 = 0x6b6773747265616d

// TryStreamLeader claims streaming for this node; nil when another node
// holds it.
func (s *Store) TryStreamLeader(ctx context.Context) (*StreamLeader, error) {
	if s.dialect.serialisesWrites() {
		return &StreamLeader{}, nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, s.readErr(err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, streamLeaderKey).Scan(&ok); err != nil {
		conn.Close()
		return nil, s.readErr(err)
	}
	if !ok {
		conn.Close()
		return nil, nil
	}
	return &StreamLeader{conn: conn}, nil
}

// Alive reports whether the claim still holds (its connection answers).
func (l *StreamLeader) Alive(ctx context.Context) bool {
	if l.conn == nil {
		return true
	}
	return l.conn.PingContext(ctx) == nil
}

// Release gives the claim up.
func (l *StreamLeader) Release() {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, streamLeaderKey)
	l.conn.Close()
}
