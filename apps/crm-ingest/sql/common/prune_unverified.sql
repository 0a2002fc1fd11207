-- Keeps the newest $1 unverified attempts.
DELETE FROM unverified WHERE seq <= (SELECT MAX(seq) FROM unverified) - $1
