package keystore

import (
	"context"
	"database/sql"
	"strings"
	"time"
)

// AuditFilter narrows ListAuditEvents.
type AuditFilter struct {
	TargetType string
	TargetID   int64
	// GroupID limits events to one group and what belongs to it (its CAs
	// and their revocations).
	GroupID int64
	After   *time.Time
	Before  *time.Time
}

// ListAuditEvents lists audit events, newest first.
func (s *Store) ListAuditEvents(ctx context.Context, f AuditFilter, pg Page) ([]*AuditEvent, int, error) {
	where := []string{"1=1"}
	var args []any
	if f.TargetType != "" {
		where = append(where, "target_type = ?")
		args = append(args, f.TargetType)
	}
	if f.TargetID != 0 {
		where = append(where, "target_id = ?")
		args = append(args, f.TargetID)
	}
	if f.GroupID != 0 {
		where = append(where, `((target_type = 'group' AND target_id = ?)
			OR (target_type = 'ca' AND target_id IN (SELECT id FROM group_cas WHERE group_id = ?))
			OR (target_type = 'revocation' AND target_id IN (SELECT r.id FROM cert_revocations r WHERE r.group_id = ?))
			OR (target_type = 'bastion_target' AND target_id IN (SELECT id FROM bastion_targets WHERE group_id = ?))
			OR (target_type = 'key_policy' AND target_id IN (SELECT id FROM key_policies WHERE group_id = ?)))`)
		args = append(args, f.GroupID, f.GroupID, f.GroupID, f.GroupID, f.GroupID)
	}
	if f.After != nil {
		where = append(where, "at >= ?")
		args = append(args, ms(*f.After))
	}
	if f.Before != nil {
		where = append(where, "at < ?")
		args = append(args, ms(*f.Before))
	}
	cond := strings.Join(where, " AND ")
	total, err := s.count(ctx, `SELECT COUNT(*) FROM audit_events WHERE `+cond, args...)
	if err != nil {
		return nil, 0, err
	}
	limit, offset := pg.limitOffset()
	rows, err := s.query(ctx, `SELECT id, at, actor_id, action, target_type, target_id, details, remote_ip FROM audit_events
		WHERE `+cond+` ORDER BY id DESC LIMIT ? OFFSET ?`, append(args, limit, offset)...)
	out, err := scanRows(rows, err, func(row rowScanner) (*AuditEvent, error) {
		var e AuditEvent
		var at int64
		var actor sql.NullInt64
		err := row.Scan(&e.ID, &at, &actor, &e.Action, &e.TargetType, &e.TargetID, &e.Details, &e.RemoteIP)
		e.At = fromMS(at)
		if actor.Valid {
			e.ActorID = &actor.Int64
		}
		return &e, err
	})
	return out, total, err
}

// RecordEvent writes an audit event that is not part of a store write (an
// SSH decision, a forwarded connection). It writes no change-log row, so on
// PostgreSQL it does not queue for the cluster-wide write lock.
func (s *Store) RecordEvent(ctx context.Context, a Actor, action, targetType string, targetID int64, details map[string]any) error {
	return s.writeTx(ctx, a, false, func(t *tx) error {
		return t.audit(ctx, action, targetType, targetID, details)
	})
}

// LastChange reports the sequence number of the newest change (0 if none).
func (s *Store) LastChange(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	err := s.queryRow(ctx, `SELECT MAX(seq) FROM changes`).Scan(&seq)
	return seq.Int64, err
}

// ChangesSince returns up to limit changes with seq > after, in order.
func (s *Store) ChangesSince(ctx context.Context, after int64, limit int) ([]Change, error) {
	rows, err := s.query(ctx, `SELECT seq, at, entity, entity_id, op FROM changes WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	return scanRows(rows, err, func(row rowScanner) (Change, error) {
		var c Change
		var at int64
		err := row.Scan(&c.Seq, &at, &c.Entity, &c.EntityID, &c.Op)
		c.At = fromMS(at)
		return c, err
	})
}
