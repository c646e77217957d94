SELECT seq, hash FROM audit_log WHERE seq = :seq
