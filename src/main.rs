fn main() {
    println!("demls-node: under construction");
}
