-- A retried run that was never decided proposes its wave again (the frame may have changed).
UPDATE topup_runs SET size = :size, allocation = :allocation, proposed_at = :proposed_at
WHERE cluster_id = :cluster_id AND flow_run_id = :flow_run_id AND decision IS NULL
