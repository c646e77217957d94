SELECT family_pid, nonce, ciphertext FROM contacts WHERE cluster_id = :cluster_id ORDER BY family_pid
