-- A provider row appears with its first channel, so receipt intake is one statement.
-- dialect: sqlite
CREATE TRIGGER channels_new_provider AFTER INSERT ON channels
BEGIN
    INSERT INTO providers (address, first_seen, last_seen)
    VALUES (NEW.provider, NEW.first_seen, NEW.first_seen)
    ON CONFLICT (address) DO NOTHING;
END;
-- dialect: postgresql
CREATE FUNCTION channels_new_provider() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO providers (address, first_seen, last_seen)
    VALUES (NEW.provider, NEW.first_seen, NEW.first_seen)
    ON CONFLICT (address) DO NOTHING;
    RETURN NEW;
END $$;
CREATE TRIGGER channels_new_provider AFTER INSERT ON channels
    FOR EACH ROW EXECUTE FUNCTION channels_new_provider();
-- dialect: all

CREATE INDEX providers_last_seen ON providers (last_seen);
