package auditstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Event is what a destination receives: the audit event with its id (the
// same on every delivery of it) and details, in the shape of GitLab's
// streamed audit events.
type Event struct {
	ID         int64          `json:"id"`
	EventType  string         `json:"event_type"`
	AuthorID   *int64         `json:"author_id"`
	EntityType string         `json:"entity_type"`
	EntityID   int64          `json:"entity_id"`
	TargetType string         `json:"target_type"`
	TargetID   int64          `json:"target_id"`
	IPAddress  string         `json:"ip_address,omitempty"`
	Details    map[string]any `json:"details"`
	CreatedAt  string         `json:"created_at"`
}

func payload(ev keystore.OutboxEvent) ([]byte, error) {
	e := ev.Event
	details := map[string]any{}
	if e.Details != "" {
		if err := json.Unmarshal([]byte(e.Details), &details); err != nil {
			return nil, err
		}
	}
	return json.Marshal(Event{ID: e.ID, EventType: e.Action, AuthorID: e.ActorID, EntityType: e.TargetType, EntityID: e.TargetID,
		TargetType: e.TargetType, TargetID: e.TargetID, IPAddress: e.RemoteIP, Details: details,
		CreatedAt: e.At.UTC().Format("2006-01-02T15:04:05.000Z")})
}

// post sends one event; any answer but 2xx is a failure.
func (s *Streamer) post(ctx context.Context, d *keystore.StreamDestination, ev keystore.OutboxEvent, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.DestinationURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keygate-audit-streaming")
	req.Header.Set("X-Gitlab-Event-Streaming-Token", d.VerificationToken)
	req.Header.Set("X-Gitlab-Audit-Event-Type", ev.Event.Action)
	req.Header.Set("X-Keygate-Event-Id", strconv.FormatInt(ev.Event.ID, 10))
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
