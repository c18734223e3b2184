-- One row per order with its totals. Incremental: each run reads only the orders whose
-- `updated_at` is newer than the newest already here, and merges them in by `order_id`, so a
-- status change replaces the earlier row. A payment that arrives for an order whose own row did
-- not change is not picked up until the next full refresh.
{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
    )
}}

with orders as (
    select * from {{ ref('stg_orders') }}
    {% if is_incremental() %}
    where updated_at > (select max(updated_at) from {{ this }})
    {% endif %}
),

items as (
    select
        order_id,
        count(*) as line_count,
        sum(quantity) as item_quantity,
        sum(line_total) as order_total
    from {{ ref('stg_order_items') }}
    where order_id in (select order_id from orders)
    group by order_id
),

payments as (
    select
        order_id,
        count(*) as payment_count,
        sum(amount) as amount_paid
    from {{ ref('stg_payments') }}
    where order_id in (select order_id from orders)
    group by order_id
)

select
    orders.order_id,
    orders.customer_id,
    orders.order_status,
    orders.ordered_at,
    cast(orders.ordered_at at time zone 'UTC' as date) as order_date,
    orders.updated_at,
    coalesce(items.line_count, 0) as line_count,
    coalesce(items.item_quantity, 0) as item_quantity,
    cast(coalesce(items.order_total, 0) as decimal(18, 2)) as order_total,
    coalesce(payments.payment_count, 0) as payment_count,
    cast(coalesce(payments.amount_paid, 0) as decimal(18, 2)) as amount_paid,
    -- Revenue counts what customers kept: the seed order_statuses says which statuses do.
    coalesce(statuses.is_revenue, false) as is_revenue,
    cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as dbt_invocation_id
from orders
left join items on items.order_id = orders.order_id
left join payments on payments.order_id = orders.order_id
left join {{ ref('order_statuses') }} as statuses on statuses.order_status = orders.order_status
