//! The demo catalogue: generated categories and products, the same on every run (no RNG).

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::{DEMO_USERS, DemoShop};
use crate::users::entity::user;

const DEMO_CATEGORIES: &[&str] = &[
    "Seeds",
    "Seedlings",
    "Substrates",
    "Fertilisers",
    "Irrigation",
    "Sensors",
    "Lighting",
    "Climate control",
    "Tools",
    "Pots and trays",
    "Plant protection",
    "Hydroponics",
];
const DEMO_WORDS: &[&str] = &[
    "Tomato",
    "Basil",
    "Cucumber",
    "Pepper",
    "Lettuce",
    "Strawberry",
    "Coco coir",
    "Perlite",
    "LED panel",
    "Drip line",
    "Humidity sensor",
    "Thermostat",
    "Pruning shears",
    "Seed tray",
    "Neem oil",
    "Nutrient mix",
];
const DEMO_ADJECTIVES: &[&str] =
    &["Organic", "Heirloom", "Compact", "Professional", "Budget", "Premium", "Dwarf", "Giant"];

/// The demo catalogue: `shop.categories` categories and `shop.products` products with varied
/// prices and stock (a tenth of them sold out), a third owned by the demo vendor. Skipped when
/// products exist already. Inserted in chunks, so 100k products take seconds.
pub(super) async fn demo_catalogue(db: &crate::db::Db, shop: DemoShop) -> anyhow::Result<Vec<String>> {
    use sea_orm::PaginatorTrait;

    use crate::shop::entity::{category, product};
    if product::Entity::find().count(db).await? > 0 {
        return Ok(vec!["catalogue: products exist, left as they are".into()]);
    }
    let vendor = user::Entity::find().filter(user::Column::Email.eq(DEMO_USERS[2].0)).one(db).await?.map(|u| u.id);
    let now = Utc::now();
    let categories: Vec<category::ActiveModel> = (0..shop.categories)
        .map(|i| {
            let base = DEMO_CATEGORIES[i % DEMO_CATEGORIES.len()];
            let name = if i < DEMO_CATEGORIES.len() {
                base.to_string()
            } else {
                format!("{base} {}", i / DEMO_CATEGORIES.len() + 1)
            };
            category::ActiveModel {
                id: Set(Uuid::now_v7()),
                name: Set(name),
                description: Set(Some(format!("Everything for the greenhouse: {}", base.to_lowercase()))),
                deleted_at: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            }
        })
        .collect();
    let category_ids: Vec<Uuid> = categories.iter().map(|c| *c.id.as_ref()).collect();
    for chunk in categories.chunks(500) {
        category::Entity::insert_many(chunk.to_vec()).exec_without_returning(db).await?;
    }
    let products = (0..shop.products).map(|i| {
        // A cheap deterministic spread (no RNG, so every seed gives the same catalogue).
        let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let word = DEMO_WORDS[i % DEMO_WORDS.len()];
        let adjective = DEMO_ADJECTIVES[(h as usize) % DEMO_ADJECTIVES.len()];
        product::ActiveModel {
            id: Set(Uuid::now_v7()),
            sku: Set(format!("DEMO-{i:06}")),
            name: Set(format!("{adjective} {word} #{i}")),
            description: Set(Some(format!("{adjective} {} for growers, lot {}", word.to_lowercase(), h % 1000))),
            price_minor: Set(99 + (h % 20_000) as i64),
            stock: Set(if i % 10 == 0 { 0 } else { (h % 500) as i64 + 1 }),
            category_id: Set(category_ids[i % category_ids.len()]),
            vendor_id: Set(if i % 3 == 0 { vendor } else { None }),
            deleted_at: Set(None),
            created_at: Set(now + chrono::Duration::milliseconds(i as i64)),
            updated_at: Set(now),
        }
    });
    let products: Vec<product::ActiveModel> = products.collect();
    for chunk in products.chunks(1000) {
        product::Entity::insert_many(chunk.to_vec()).exec_without_returning(db).await?;
    }
    Ok(vec![format!("catalogue: {} categories, {} products", shop.categories, shop.products)])
}
