SELECT key_id, keyed_from, seal FROM audit_chain WHERE id = 1
