-- A provider row appears with its first channel, so receipt intake is one statement.
CREATE TRIGGER channels_new_provider AFTER INSERT ON channels
BEGIN
    INSERT INTO providers (address, first_seen, last_seen)
    VALUES (NEW.provider, NEW.first_seen, NEW.first_seen)
    ON CONFLICT (address) DO NOTHING;
END;

CREATE INDEX providers_last_seen ON providers (last_seen);
