-- Ranking metrics over time: NDCG@5 and recall at 90% precision of every product-text variant
-- (title only, title + description, BM25, title + summary per generator) on each run date,
-- for all, head and tail queries.
-- Run: precis sql -f sql/ranking_metrics_over_time.sql
select
    ds,
    variant,
    split,
    max(case when metric = 'ndcg@5' then round(value, 4) end) as ndcg_at_5,
    max(case when metric = 'r@90p'  then round(value, 4) end) as recall_at_90p,
    max(n_queries)                                             as queries,
    max(ranker_version)                                        as ranker_version
from eval.ranking_metrics
group by ds, variant, split
order by ds, split, ndcg_at_5 desc nulls last;
