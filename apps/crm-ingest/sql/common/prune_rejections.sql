-- Drops the per-minute rejection counts of minutes before $1.
DELETE FROM rejections WHERE minute_ms < $1
