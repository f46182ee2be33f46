-- Fair webhook delivery: each delivery's destination (the scheme, host and port of its URL, in
-- lower case), so that the worker caps the attempts in flight per destination and a receiver
-- that hangs cannot take every slot.
ALTER TABLE webhook_deliveries ADD COLUMN destination text;
UPDATE webhook_deliveries
   SET destination = coalesce(
       lower(substring(url from '^([A-Za-z][A-Za-z0-9+.-]*://)')) ||
       lower(substring(url from '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^/?#]+)')),
       url);
ALTER TABLE webhook_deliveries ALTER COLUMN destination SET NOT NULL;

-- The attempts in flight, counted per destination at every claim.
CREATE INDEX webhook_deliveries_in_flight_idx ON webhook_deliveries (destination)
    WHERE status = 'pending' AND leased_until IS NOT NULL;
