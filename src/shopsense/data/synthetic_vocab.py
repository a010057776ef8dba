"""Words the synthetic store builds its catalog from (fictional brands).

Each top-level category has leaves ``(English name, English noun, Chinese
noun, median price, consumable)``, adjectives and brands in both languages,
what it is used for, and which attribute it varies by.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Leaf:
    name: str
    noun: str
    noun_zh: str
    median_price: float
    consumable: bool = False


@dataclass(frozen=True)
class Top:
    name: str
    name_zh: str
    leaves: tuple[Leaf, ...]
    adjectives: tuple[tuple[str, str], ...]
    brands: tuple[tuple[str, str], ...]
    uses: tuple[tuple[str, str], ...]
    attribute: str
    values: tuple[str, ...]


COLORS = ("black", "white", "silver", "blue", "red", "green", "pink", "grey")

TOPS: tuple[Top, ...] = (
    Top(
        "Electronics",
        "数码电子",
        (
            Leaf("Smartphones", "smartphone", "手机", 420.0),
            Leaf("Laptops", "laptop", "笔记本电脑", 900.0),
            Leaf("Headphones", "wireless headphones", "无线耳机", 80.0),
            Leaf("Smartwatches", "smartwatch", "智能手表", 180.0),
            Leaf("Tablets", "tablet", "平板电脑", 350.0),
            Leaf("Cameras", "mirrorless camera", "微单相机", 650.0),
            Leaf("Chargers", "fast charger", "快充充电器", 25.0),
        ),
        (
            ("ultra-thin", "超薄"),
            ("5G", "5G"),
            ("long-battery", "长续航"),
            ("pro", "专业版"),
            ("noise-cancelling", "降噪"),
            ("compact", "便携"),
        ),
        (
            ("Voltix", "沃帝"),
            ("Novaphone", "诺瓦"),
            ("Huaxing", "华星"),
            ("Lumen", "流明"),
            ("Kestrel", "隼"),
            ("Orbit", "轨迹"),
        ),
        (("work and travel", "办公出行"), ("gaming", "游戏"), ("students", "学生")),
        "storage",
        ("64GB", "128GB", "256GB", "512GB"),
    ),
    Top(
        "Home & Kitchen",
        "家居厨房",
        (
            Leaf("Cookware", "non-stick frying pan", "不粘锅", 45.0),
            Leaf("Bedding", "cotton duvet cover", "纯棉被套", 60.0),
            Leaf("Storage", "storage box", "收纳盒", 18.0),
            Leaf("Lighting", "LED desk lamp", "LED台灯", 35.0),
            Leaf("Coffee Makers", "espresso machine", "咖啡机", 160.0),
            Leaf("Knives", "chef knife", "厨师刀", 55.0),
            Leaf("Vacuum Cleaners", "cordless vacuum cleaner", "无线吸尘器", 220.0),
        ),
        (
            ("stainless steel", "不锈钢"),
            ("minimalist", "简约"),
            ("large", "大号"),
            ("ceramic", "陶瓷"),
            ("smart", "智能"),
            ("foldable", "可折叠"),
        ),
        (
            ("Hearthly", "暖居"),
            ("Meijia", "美家"),
            ("Nordhus", "诺德"),
            ("Casa Bella", "贝拉"),
            ("Ironleaf", "铁叶"),
            ("Dwello", "栖"),
        ),
        (
            ("small apartments", "小户型"),
            ("family kitchens", "家庭厨房"),
            ("daily use", "日常使用"),
        ),
        "material",
        ("steel", "ceramic", "cotton", "bamboo", "glass"),
    ),
    Top(
        "Beauty",
        "美妆个护",
        (
            Leaf("Skincare", "hydrating face cream", "保湿面霜", 28.0, True),
            Leaf("Lipstick", "matte lipstick", "哑光口红", 18.0, True),
            Leaf("Shampoo", "anti-dandruff shampoo", "去屑洗发水", 9.0, True),
            Leaf("Perfume", "eau de parfum", "香水", 65.0),
            Leaf("Sunscreen", "SPF 50 sunscreen", "防晒霜", 15.0, True),
            Leaf("Face Masks", "sheet face mask", "面膜", 12.0, True),
            Leaf("Nail Polish", "gel nail polish", "甲油胶", 8.0, True),
        ),
        (
            ("organic", "有机"),
            ("fragrance-free", "无香"),
            ("long-lasting", "持久"),
            ("gentle", "温和"),
            ("travel-size", "旅行装"),
            ("vitamin C", "维C"),
        ),
        (
            ("Glowé", "光润"),
            ("Yumei", "玉美"),
            ("Petal & Co", "花瓣"),
            ("Dermalab", "肤研"),
            ("Aurora", "极光"),
            ("Silkroot", "丝源"),
        ),
        (("dry skin", "干性肌肤"), ("sensitive skin", "敏感肌"), ("everyday care", "日常护理")),
        "volume",
        ("30ml", "50ml", "100ml", "200ml"),
    ),
    Top(
        "Grocery",
        "食品饮料",
        (
            Leaf("Coffee", "arabica coffee beans", "阿拉比卡咖啡豆", 14.0, True),
            Leaf("Tea", "green tea", "绿茶", 10.0, True),
            Leaf("Snacks", "roasted nuts", "坚果零食", 6.0, True),
            Leaf("Chocolate", "dark chocolate", "黑巧克力", 5.0, True),
            Leaf("Pasta", "spaghetti", "意大利面", 3.0, True),
            Leaf("Olive Oil", "extra virgin olive oil", "特级初榨橄榄油", 12.0, True),
            Leaf("Cereal", "granola cereal", "燕麦麦片", 5.0, True),
        ),
        (
            ("organic", "有机"),
            ("family-size", "家庭装"),
            ("low-sugar", "低糖"),
            ("premium", "精选"),
            ("fair-trade", "公平贸易"),
            ("gluten-free", "无麸质"),
        ),
        (
            ("Harvest Lane", "丰收"),
            ("Chayuan", "茶园"),
            ("Good Grain", "好谷"),
            ("Cocoa Hill", "可可山"),
            ("Olivia", "橄榄树"),
            ("Morning Co", "晨光"),
        ),
        (("breakfast", "早餐"), ("the office", "办公室"), ("sharing", "分享")),
        "weight",
        ("250g", "500g", "1kg"),
    ),
    Top(
        "Sports & Outdoors",
        "运动户外",
        (
            Leaf("Running Shoes", "running shoes", "跑步鞋", 95.0),
            Leaf("Yoga Mats", "yoga mat", "瑜伽垫", 30.0),
            Leaf("Tents", "camping tent", "露营帐篷", 140.0),
            Leaf("Bicycles", "mountain bike", "山地自行车", 480.0),
            Leaf("Dumbbells", "adjustable dumbbell set", "可调节哑铃", 110.0),
            Leaf("Backpacks", "hiking backpack", "登山背包", 70.0),
            Leaf("Water Bottles", "insulated water bottle", "保温水壶", 22.0),
        ),
        (
            ("lightweight", "轻量"),
            ("waterproof", "防水"),
            ("breathable", "透气"),
            ("non-slip", "防滑"),
            ("durable", "耐用"),
            ("ergonomic", "人体工学"),
        ),
        (
            ("Summit", "峰顶"),
            ("Stride", "步履"),
            ("Xingyun", "行云"),
            ("Trailhead", "山径"),
            ("Pulse", "脉动"),
            ("Boreal", "北境"),
        ),
        (
            ("trail running", "越野跑"),
            ("home workouts", "居家健身"),
            ("weekend camping", "周末露营"),
        ),
        "color",
        COLORS,
    ),
    Top(
        "Clothing",
        "服饰鞋包",
        (
            Leaf("T-Shirts", "cotton t-shirt", "纯棉T恤", 18.0),
            Leaf("Jeans", "slim-fit jeans", "修身牛仔裤", 45.0),
            Leaf("Dresses", "summer dress", "连衣裙", 50.0),
            Leaf("Jackets", "down jacket", "羽绒服", 120.0),
            Leaf("Sweaters", "wool sweater", "羊毛衫", 60.0),
            Leaf("Socks", "ankle socks", "短袜", 8.0, True),
            Leaf("Sneakers", "canvas sneakers", "帆布鞋", 55.0),
        ),
        (
            ("oversized", "宽松"),
            ("classic", "经典"),
            ("warm", "保暖"),
            ("casual", "休闲"),
            ("vintage", "复古"),
            ("stretch", "弹力"),
        ),
        (
            ("Urbano", "都市"),
            ("Linen & Loom", "麻织"),
            ("Qingshan", "青衫"),
            ("Northwind", "北风"),
            ("Maven", "尚品"),
            ("Kite", "风筝"),
        ),
        (("everyday wear", "日常穿搭"), ("the office", "通勤"), ("winter", "冬季")),
        "size",
        ("XS", "S", "M", "L", "XL"),
    ),
    Top(
        "Books",
        "图书",
        (
            Leaf("Novels", "mystery novel", "悬疑小说", 14.0),
            Leaf("Cookbooks", "cookbook", "菜谱", 22.0),
            Leaf("Children's Books", "picture book", "儿童绘本", 10.0),
            Leaf("Science", "popular science book", "科普读物", 18.0),
            Leaf("History", "history of China", "中国通史", 25.0),
            Leaf("Self-Help", "productivity guide", "效率指南", 15.0),
            Leaf("Comics", "manga volume", "漫画", 9.0),
        ),
        (
            ("bestselling", "畅销"),
            ("illustrated", "插图版"),
            ("hardcover", "精装"),
            ("award-winning", "获奖"),
            ("new edition", "新版"),
            ("collector's", "典藏版"),
        ),
        (
            ("Pageturn Press", "翻页"),
            ("Zhonghua Books", "中华书局"),
            ("Inkwell", "墨池"),
            ("Lantern House", "灯笼"),
            ("Bluebird", "青鸟"),
            ("Quill", "羽笔"),
        ),
        (("bedtime reading", "睡前阅读"), ("curious minds", "好奇心"), ("gifts", "送礼")),
        "format",
        ("paperback", "hardcover", "ebook"),
    ),
    Top(
        "Toys & Baby",
        "玩具母婴",
        (
            Leaf("Building Blocks", "building blocks set", "积木套装", 40.0),
            Leaf("Dolls", "plush doll", "毛绒玩偶", 20.0),
            Leaf("Puzzles", "1000-piece puzzle", "千片拼图", 18.0),
            Leaf("Diapers", "baby diapers", "婴儿纸尿裤", 25.0, True),
            Leaf("Baby Bottles", "anti-colic baby bottle", "防胀气奶瓶", 15.0, True),
            Leaf("Board Games", "family board game", "家庭桌游", 30.0),
            Leaf("RC Cars", "remote control car", "遥控车", 45.0),
        ),
        (
            ("educational", "益智"),
            ("soft", "柔软"),
            ("colorful", "彩色"),
            ("safe", "安全"),
            ("deluxe", "豪华"),
            ("classic", "经典"),
        ),
        (
            ("Tinytown", "小镇"),
            ("Bebe", "贝贝"),
            ("Playwise", "乐智"),
            ("Panda Cub", "熊猫宝宝"),
            ("Wonderbox", "奇妙盒"),
            ("Sprout", "萌芽"),
        ),
        (("toddlers", "幼儿"), ("family nights", "家庭聚会"), ("ages 6 and up", "6岁以上")),
        "age",
        ("0-1", "1-3", "3-6", "6+"),
    ),
)

FEATURES = (
    ("is easy to clean", "易清洁"),
    ("comes with a two-year warranty", "两年质保"),
    ("ships in recyclable packaging", "环保包装"),
    ("is rated highly by customers", "好评如潮"),
    ("fits in any bag", "小巧便携"),
)
