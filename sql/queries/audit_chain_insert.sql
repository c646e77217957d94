INSERT INTO audit_chain (id, key_id, keyed_from, seal) VALUES (1, :key_id, :keyed_from, :seal)
