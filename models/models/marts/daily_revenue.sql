-- One row per UTC day on which at least one order was placed.
select
    order_date,
    count(*) as order_count,
    sum(case when is_revenue then 1 else 0 end) as revenue_order_count,
    count(distinct customer_id) as customer_count,
    sum(case when is_revenue then item_quantity else 0 end) as items_sold,
    cast(sum(case when order_status <> 'cancelled' then order_total else 0 end)
        as decimal(18, 2)) as gross_revenue,
    cast(sum(case when order_status = 'returned' then order_total else 0 end)
        as decimal(18, 2)) as returned_revenue,
    cast(sum(case when is_revenue then order_total else 0 end)
        as decimal(18, 2)) as net_revenue
from {{ ref('fct_orders') }}
group by order_date
