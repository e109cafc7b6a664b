-- Rating-prediction error by user activity (EXP3RT): mean absolute and root-mean-square error
-- of predicted against actual ratings, bucketed by how many reviews the user has written.
-- Only (user, product) pairs with a known actual rating count.
-- Run: precis sql -f sql/rating_error_by_user_activity.sql
with activity as (
    select user_id, count(*) as n_reviews from bronze.reviews group by user_id
),
scored as (
    select r.adapter_version, r.predicted_rating, r.actual_rating, coalesce(a.n_reviews, 0) as n_reviews
    from gold.rating_predictions r
    left join activity a on a.user_id = r.user_id
    where r.actual_rating is not null
)
select
    adapter_version,
    case when n_reviews < 5 then '1-4 reviews'
         when n_reviews < 10 then '5-9 reviews'
         when n_reviews < 20 then '10-19 reviews'
         else '20+ reviews' end                                          as user_activity,
    count(*)                                                            as pairs,
    round(avg(abs(predicted_rating - actual_rating)), 3)                as mae,
    round(sqrt(avg((predicted_rating - actual_rating) ^ 2)), 3)         as rmse
from scored
group by all
order by adapter_version, min(n_reviews);
