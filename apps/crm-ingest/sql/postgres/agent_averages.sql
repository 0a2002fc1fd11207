-- Each agent's average AI score over its newest $1 scored real calls
-- received since $2, for agents with that many; the lowest first.
SELECT agent, AVG(ai_score) FROM (
    SELECT COALESCE(agent_name, agent_id, 'unknown agent') AS agent, ai_score,
        ROW_NUMBER() OVER (PARTITION BY COALESCE(agent_name, agent_id, 'unknown agent')
                           ORDER BY seq DESC) AS newest
    FROM calls WHERE NOT is_test AND ai_score IS NOT NULL AND received_ms >= $2
) AS recent
WHERE newest <= $1
GROUP BY agent HAVING COUNT(*) = $1
ORDER BY 2
