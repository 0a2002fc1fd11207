DELETE FROM crm_outbox_attempts WHERE outbox_seq IN
    (SELECT seq FROM crm_outbox WHERE state = 'delivered' AND settled_ms < ?1)
