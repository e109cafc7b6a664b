-- Summary coverage per category: how many products have a published ReLSum summary (what
-- rankers read) and how many have at least one generated summary of any generator.
-- A product's category is its reviews' category; products known only from a relevance source
-- (CrowdFlower, ESCI) are grouped as "search:<source>".
-- Run: precis sql -f sql/summary_coverage_by_category.sql
with products as (
    select product_id, 'search:' || source as category from bronze.products
    union
    select distinct product_id, coalesce(category, '(none)') as category from bronze.reviews
),
generated as (select distinct product_id from gold.product_summaries),
published as (select product_id from serving.product_summaries)
select
    p.category,
    count(*)                                               as products,
    count(g.product_id)                                    as with_generated_summary,
    count(s.product_id)                                    as with_published_summary,
    round(100.0 * count(s.product_id) / count(*), 2)       as published_pct
from products p
left join generated g on g.product_id = p.product_id
left join published s on s.product_id = p.product_id
group by p.category
order by products desc, p.category;
