-- The daily roll-up neither loses nor double-counts revenue. Returns a row when the totals differ.
with daily as (
    select sum(net_revenue) as net_revenue, sum(order_count) as order_count
    from {{ ref('daily_revenue') }}
),

orders as (
    select
        sum(case when is_revenue then order_total else 0 end) as net_revenue,
        count(*) as order_count
    from {{ ref('fct_orders') }}
)

select
    daily.net_revenue as daily_net_revenue,
    orders.net_revenue as orders_net_revenue,
    daily.order_count as daily_order_count,
    orders.order_count as orders_order_count
from daily
cross join orders
where daily.net_revenue <> orders.net_revenue
   or daily.order_count <> orders.order_count
