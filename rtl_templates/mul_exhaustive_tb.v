// Plain-Verilog exhaustive testbench for an 8x8 multiplier (no cocotb): the independent
// reference hwflow's tests and bench compare the cocotb characterization against.
// Compile with -DMUL_TOP=<module> -DPORT_A=<a> -DPORT_B=<b> -DPORT_O=<o>; writes one
// output per line (%h, 16-bit pattern) to "products.txt", a outer loop, b inner.
`timescale 1ns/1ps
module mul_exhaustive_tb;
  reg [7:0] a, b;
  wire [15:0] o;
  integer i, f;
  `MUL_TOP dut (.`PORT_A(a), .`PORT_B(b), .`PORT_O(o));
  initial begin
    f = $fopen("products.txt", "w");
    for (i = 0; i < 65536; i = i + 1) begin
      a = i[15:8];
      b = i[7:0];
      #1;
      $fwrite(f, "%h\n", o);
    end
    $fclose(f);
    $finish;
  end
endmodule
