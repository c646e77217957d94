INSERT INTO contacts (cluster_id, family_pid, key_id, nonce, ciphertext, extract_sha256) VALUES (:cluster_id, :family_pid, :key_id, :nonce, :ciphertext, :extract_sha256)
