-- One row per customer with their ordering history and lifetime value (revenue orders only).
with customers as (
    select * from {{ ref('stg_customers') }}
),

order_history as (
    select
        customer_id,
        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at,
        count(*) as order_count,
        sum(case when is_revenue then 1 else 0 end) as revenue_order_count,
        sum(case when is_revenue then order_total else 0 end) as lifetime_value
    from {{ ref('fct_orders') }}
    group by customer_id
)

select
    customers.customer_id,
    customers.first_name,
    customers.last_name,
    {{ dbt.concat(["customers.first_name", "' '", "customers.last_name"]) }} as full_name,
    customers.email,
    customers.country_code,
    customers.created_at,
    order_history.first_ordered_at,
    order_history.last_ordered_at,
    coalesce(order_history.order_count, 0) as order_count,
    coalesce(order_history.revenue_order_count, 0) as revenue_order_count,
    cast(coalesce(order_history.lifetime_value, 0) as decimal(18, 2)) as lifetime_value
from customers
left join order_history on order_history.customer_id = customers.customer_id
