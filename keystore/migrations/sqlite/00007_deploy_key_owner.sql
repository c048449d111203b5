-- +goose Up
-- Deploy keys answer to their owner (user_id: who made the key, or the user
-- an admin transferred it to). user_id is SET NULL when that user is
-- deleted; user_recorded tells that case ("deleted": the key answers to no
-- one) from a key whose owner was never recorded ("unknown").
ALTER TABLE deploy_keys ADD COLUMN user_recorded INTEGER NOT NULL DEFAULT 0;
-- Before this migration every deploy key was made through the API by a
-- user: a key whose user_id is gone but whose creation the audit log names
-- lost its owner to a deletion.
UPDATE deploy_keys SET user_recorded = 1
WHERE user_id IS NOT NULL
   OR EXISTS (SELECT 1 FROM audit_events a
              WHERE a.target_type = 'deploy_key' AND a.target_id = deploy_keys.id
                AND a.action = 'deploy_key_created' AND a.actor_id IS NOT NULL);

-- +goose Down
ALTER TABLE deploy_keys DROP COLUMN user_recorded;
