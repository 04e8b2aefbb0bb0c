//! RFM, buy-till-you-die, spend, CLV and behaviour traits (pure).
