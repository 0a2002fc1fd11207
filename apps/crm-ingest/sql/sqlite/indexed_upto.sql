-- The newest delivery-log `seq` the search index holds (version 10).
SELECT upto FROM search_indexed WHERE name = 'deliveries'
