//! MBG/NBD (Batislam, Denizel & Filiztekin 2007). (Being written.)
